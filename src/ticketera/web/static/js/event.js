// The event page before the sale opens: a countdown to onSaleAt, then the page again (now on sale).

import { countdown } from "./countdown.js";
import { pageData } from "./page-data.js";

const data = pageData();
const element = document.querySelector("[data-countdown]");
if (element && data.onSaleAt) {
  // The page was rendered at data.now by the server's clock.
  const skew = Date.parse(data.now) - Date.now();
  countdown(element, Date.parse(data.onSaleAt), { skew, onEnd: () => window.location.reload() });
}
