// Wall mode: size the tile grid so that every tile fits the screen, whatever the screen and the
// number of refs. Picks the column count that gives the largest text, then sets the grid's
// columns and rows and --u (the tile's font unit, px) on the grid; the stylesheet sizes every
// line of a tile from --u. Without this script the grid falls back to fixed-size tiles.
// Below MIN_UNIT (a phone showing many refs) text would be unreadable: the tiles keep that size,
// as many columns as fit, and the page scrolls instead.
(function () {
  "use strict";
  // A tile is about 16 units wide and 7 tall for its lines of text (see .tile in the CSS).
  var WIDE = 16, TALL = 7, MAX_UNIT = 40, MIN_UNIT = 6;

  function layout() {
    var grid = document.querySelector("ul.tiles");
    if (!grid) return;
    var count = grid.children.length;
    if (!count) return;
    var style = window.getComputedStyle(grid);
    var gap = parseFloat(style.rowGap) || 0;
    // The room left below the summary, whatever the grid's own height is now.
    var page = window.getComputedStyle(grid.parentElement);
    var top = grid.getBoundingClientRect().top + window.scrollY;
    var width = grid.clientWidth;
    var height = document.documentElement.clientHeight - top - (parseFloat(page.paddingBottom) || 0);
    if (!(width > 0 && height > 0)) return;
    var best = { unit: 0, cols: 1, rows: count };
    for (var cols = 1; cols <= count; cols++) {
      var rows = Math.ceil(count / cols);
      var w = (width - gap * (cols - 1)) / cols;
      var h = (height - gap * (rows - 1)) / rows;
      if (w <= 0 || h <= 0) continue;
      var unit = Math.min(w / WIDE, h / TALL, MAX_UNIT);
      if (unit > best.unit) best = { unit: unit, cols: cols, rows: rows };
    }
    var scrolls = best.unit < MIN_UNIT;
    if (scrolls) {
      var fit = Math.floor((width + gap) / (WIDE * MIN_UNIT + gap));
      best = { unit: MIN_UNIT, cols: Math.max(1, Math.min(fit, count)), rows: 0 };
    }
    grid.style.setProperty("--cols", String(best.cols));
    grid.style.setProperty("--rows", String(best.rows));
    grid.style.setProperty("--u", best.unit.toFixed(2) + "px");
    grid.classList.toggle("fitted", !scrolls);
    grid.classList.toggle("scrolled", scrolls);
    grid.classList.toggle("dense", best.unit < 12);
  }

  var pending = 0;
  window.addEventListener("resize", function () {
    window.cancelAnimationFrame(pending);
    pending = window.requestAnimationFrame(layout);
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", layout);
  } else {
    layout();
  }
})();
