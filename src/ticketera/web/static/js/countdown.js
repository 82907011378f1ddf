// A countdown to a moment the server named, on the server's clock: `skew` is how far the phone's
// clock is from the server's (from an answer's Date header), so a wrong phone clock does not shorten a hold.

import { formatClock } from "./format.js";

/** Shows the time left in `element` every second; calls onEnd once when it runs out. Returns stop(). */
export function countdown(element, deadline, { skew = 0, onEnd = () => {}, format = formatClock } = {}) {
  let timer = null;
  const tick = () => {
    const left = (deadline - (Date.now() + skew)) / 1000;
    element.textContent = format(Math.max(0, Math.floor(left)));
    if (left <= 0) {
      stop();
      onEnd();
    }
  };
  const stop = () => {
    if (timer !== null) clearInterval(timer);
    timer = null;
  };
  timer = setInterval(tick, 1000);
  tick();
  return stop;
}
