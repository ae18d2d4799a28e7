// The console's only script besides htmx. No inline scripts anywhere, so a strict
// Content-Security-Policy can forbid them.
(function () {
  "use strict";

  // Live regions poll with hx-trigger="every Ns"; skip the request while the tab is hidden,
  // so a forgotten tab costs the database nothing.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var source = event.detail.elt;
    if (!source || !source.classList.contains("live")) return;
    // Hidden tab: skip. Ticked rows: a refresh would untick them, so wait.
    if (document.hidden || source.querySelector("input[type=checkbox]:checked")) {
      event.preventDefault();
    }
  });

  // Copy buttons: <button data-copy-target="element-id">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var target = document.getElementById(button.getAttribute("data-copy-target"));
    if (!target || !navigator.clipboard) return;
    navigator.clipboard.writeText(target.textContent).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });
})();
