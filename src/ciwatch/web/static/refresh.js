// Reload the page every data-refresh seconds (0: never), but not while someone uses it:
// typing or a focused form field, selected text, a hidden tab, or input in the last period.
(function () {
  "use strict";
  var seconds = parseInt(document.documentElement.getAttribute("data-refresh") || "0", 10);
  if (!(seconds > 0)) return;
  var period = seconds * 1000;
  var last = Date.now();
  var touch = function () { last = Date.now(); };
  ["keydown", "pointerdown", "pointermove", "wheel", "touchstart", "input", "scroll"].forEach(function (name) {
    window.addEventListener(name, touch, { passive: true, capture: true });
  });
  window.setInterval(function () {
    if (document.hidden || Date.now() - last < period) return;
    var field = document.activeElement;
    if (field && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(field.tagName)) return;
    if (window.getSelection && String(window.getSelection()).length > 0) return;
    window.location.reload();
  }, 2000);
})();
