// Configuration pages: copying a new API key (the key is in a read-only
// input, so without a script it can still be selected and copied by hand).
(function () {
  "use strict";

  var button = document.getElementById("copy-api-key");
  if (!button) { return; }
  var input = document.getElementById(button.getAttribute("data-copy"));
  var status = document.getElementById("copy-status");
  if (!input) { return; }
  button.hidden = false;

  function say(text) { if (status) { status.textContent = text; } }

  button.addEventListener("click", function () {
    input.focus();
    input.select();
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(input.value).then(
        function () { say("Copied to the clipboard."); },
        function () { say("Press Ctrl+C (⌘C) to copy the selected key."); }
      );
    } else {
      say("Press Ctrl+C (⌘C) to copy the selected key.");
    }
  });
})();
