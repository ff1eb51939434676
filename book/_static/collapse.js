// Long result tables (class fusion-long, from fusion.report.glue.table_html) show their first
// `data-shown` rows and a button below them that shows every row, and back. Without JavaScript the
// whole table shows. Sphinx loads every .js file of book/_static on every page.
(function () {
  "use strict";

  function collapse(table) {
    const shown = parseInt(table.dataset.shown || "12", 10);
    const rows = table.tBodies.length ? Array.from(table.tBodies[0].rows) : [];
    if (rows.length <= shown) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "fusion-show-all";
    let open = false;
    const update = () => {
      rows.forEach((row, i) => {
        row.hidden = !open && i >= shown;
      });
      button.textContent = open ? `Show the first ${shown} rows only` : `Show all ${rows.length} rows`;
      button.setAttribute("aria-expanded", String(open));
    };
    button.addEventListener("click", () => {
      open = !open;
      update();
    });
    table.insertAdjacentElement("afterend", button);
    update();
  }

  const run = () => document.querySelectorAll("table.fusion-long").forEach(collapse);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
  else run();
})();
