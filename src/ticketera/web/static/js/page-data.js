// What the server tells a page's scripts: translated messages, ids, addresses, formats. It comes as
// JSON in <script type="application/json" id="page-data">, which never runs, so the pages keep a
// Content-Security-Policy without 'unsafe-inline'.

export function pageData() {
  const block = document.getElementById("page-data");
  return block ? JSON.parse(block.textContent) : {};
}
