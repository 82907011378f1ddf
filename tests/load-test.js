// Helpers of tests/load-test.yml (artillery's `processor`).
"use strict";

// `loop ... whileTrue`: keep polling the line until the status answer carried an access token.
function waitingInLine(context, next) {
  return next(!context.vars.accessToken);
}

// The buy page's choice: the general-admission section with places left (the seat picker, by
// seat id, is `ticketera loadtest`'s).
function pickGeneralAdmission(requestParams, response, context, events, next) {
  const event = JSON.parse(response.body);
  const open = event.sections.filter((s) => s.kind === "general_admission" && s.available > 0);
  context.vars.sectionId = open.length ? open[0].id : event.sections[0].id;
  return next();
}

module.exports = { waitingInLine, pickGeneralAdmission };
