// Layout check of the book, used by tests/test_book.py and by anyone who opens a page with
// `?check=overflow` at the end of its address: every table and figure wider than the
// article's content column is outlined in red and listed, as JSON, in <pre id="fusion-overflow">
// at the end of the page; `window.fusionOverflow` is a promise of the same list, settled once the
// page, its images, its fonts and MathJax are done. Without the parameter the script does nothing.
(function () {
  "use strict";
  if (!/[?&]check=overflow(&|$)/.test(window.location.search)) return;
  const SELECTOR = "table, img, figure, svg, canvas, video, iframe";

  function describe(el) {
    const id = el.id || (el.closest("[id]") || {}).id || "";
    const cls = typeof el.className === "string" ? el.className.trim().split(/\s+/)[0] : "";
    const text = el.tagName === "IMG" ? el.getAttribute("src") : (el.textContent || "").replace(/\s+/g, " ").trim().slice(0, 60);
    return `${el.tagName.toLowerCase()}${cls ? "." + cls : ""}${id ? " in #" + id : ""}: ${text}`;
  }

  function measure() {
    const article = document.querySelector(".bd-article") || document.querySelector("main") || document.body;
    const box = article.getBoundingClientRect();
    const style = getComputedStyle(article);
    const left = box.left + parseFloat(style.paddingLeft);
    const right = box.right - parseFloat(style.paddingRight);
    const found = [];
    const flagged = [];
    for (const el of article.querySelectorAll(SELECTOR)) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue; // not displayed (a collapsed cell, say)
      if (flagged.some((outer) => outer.contains(el))) continue; // reported with its container
      const over = Math.max(r.right - right, left - r.left);
      if (over > 1) {
        flagged.push(el);
        el.style.outline = "3px solid red";
        found.push({ element: describe(el), width: Math.round(r.width), column: Math.round(right - left), over: Math.round(over) });
      }
    }
    return found;
  }

  window.fusionOverflow = new Promise((resolve) => {
    const run = () => {
      const mathjax = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
      Promise.resolve(mathjax)
        .catch(() => undefined)
        .then(() => document.fonts.ready)
        .then(() => {
          const found = measure();
          const pre = document.createElement("pre");
          pre.id = "fusion-overflow";
          pre.textContent = JSON.stringify(found);
          document.body.appendChild(pre);
          resolve(found);
        });
    };
    if (document.readyState === "complete") run();
    else window.addEventListener("load", run);
  });
})();
