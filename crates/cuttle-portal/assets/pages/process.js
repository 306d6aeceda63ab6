// Process editor: the script editor indents with Tab (Esc, then Tab,
// leaves it), and the step form hides the fields that do not apply. The
// forms work without this; it only makes them easier to use.
(function () {
  "use strict";

  // Tab inserts indentation, Shift+Tab removes it from the current line.
  // Esc lets the next Tab move focus on, so the keyboard is never trapped.
  function codeEditor(area) {
    var leaving = false;
    function unit() {
      var syntax = document.getElementById("script-syntax");
      return syntax && syntax.value === "Python" ? "    " : "  ";
    }
    function insert(text) {
      area.focus();
      // execCommand keeps the browser's undo history; setRangeText otherwise.
      if (!document.execCommand || !document.execCommand("insertText", false, text)) {
        area.setRangeText(text, area.selectionStart, area.selectionEnd, "end");
      }
    }
    function outdent() {
      var value = area.value;
      var start = value.lastIndexOf("\n", area.selectionStart - 1) + 1;
      var width = unit().length, n = 0;
      while (n < width && value.charAt(start + n) === " ") { n++; }
      if (n === 0) { return; }
      var caret = area.selectionStart;
      area.setRangeText("", start, start + n, "preserve");
      area.selectionStart = area.selectionEnd = Math.max(start, caret - n);
    }
    area.addEventListener("keydown", function (e) {
      if (e.key === "Escape") { leaving = true; return; }
      if (e.key !== "Tab" || e.ctrlKey || e.altKey || e.metaKey) { leaving = false; return; }
      if (leaving) { leaving = false; return; }
      e.preventDefault();
      if (e.shiftKey) { outdent(); } else { insert(unit()); }
    });
    area.addEventListener("blur", function () { leaving = false; });
  }

  // Shows a field only while the choice it belongs to is made.
  function toggle(container, shown) {
    if (container) { container.hidden = !shown; }
  }

  function stepForm() {
    var condition = document.getElementById("step-condition");
    var expression = document.querySelector(".condition-expression");
    if (condition && expression) {
      var sync = function () { toggle(expression, condition.value === "Variable"); };
      condition.addEventListener("change", sync);
      sync();
    }
    var targets = document.getElementById("run-on-targets");
    var server = document.getElementById("run-on-server");
    var roles = document.querySelector(".run-on .roles-field");
    if (targets && server && roles) {
      var syncRoles = function () { toggle(roles, targets.checked); };
      targets.addEventListener("change", syncRoles);
      server.addEventListener("change", syncRoles);
      syncRoles();
    }
  }

  document.querySelectorAll("textarea[data-code-editor]").forEach(codeEditor);
  if (document.querySelector(".step-editor")) { stepForm(); }
})();
