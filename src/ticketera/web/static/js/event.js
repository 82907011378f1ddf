// The event page: before the sale opens, a countdown to onSaleAt, then the page again (now on sale);
// while it is open, what is left read again every few seconds, and the page again when its state
// changes (sold out for now -> on sale when a hold runs out, paused -> on sale...).

import { countdown } from "./countdown.js";
import { pageData } from "./page-data.js";
import { saleState, showLeft, watchStock } from "./stock.js";

const data = pageData();
const element = document.querySelector("[data-countdown]");
if (element && data.onSaleAt) {
  // The page was rendered at data.now by the server's clock.
  const skew = Date.parse(data.now) - Date.now();
  countdown(element, Date.parse(data.onSaleAt), { skew, onEnd: () => window.location.reload() });
}

watchStock(data.eventId, (event, serverNow) => {
  showLeft(event, data.messages);
  // The rest of the page (the way into the line, the words) is the server's to write.
  if (saleState(event, serverNow) !== data.state) window.location.reload();
});
