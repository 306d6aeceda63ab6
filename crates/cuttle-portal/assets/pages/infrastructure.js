// Infrastructure pages: "Copy" buttons beside the agent commands. The
// commands are plain text in <pre><code>, so they can be selected by hand
// without this; the buttons are hidden until the clipboard is usable.
(function () {
  "use strict";

  function copy(button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) { return; }
    // Only the visible word changes; the hidden rest of the label stays.
    var word = button.firstChild;
    navigator.clipboard.writeText(source.textContent).then(function () {
      word.textContent = "Copied";
      button.classList.add("copied");
      setTimeout(function () {
        word.textContent = "Copy";
        button.classList.remove("copied");
      }, 2000);
    }, function () {
      word.textContent = "Select and copy by hand";
    });
  }

  if (!navigator.clipboard || !window.isSecureContext) { return; }
  document.querySelectorAll("button.copy[data-copy]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () { copy(b); });
  });
})();
