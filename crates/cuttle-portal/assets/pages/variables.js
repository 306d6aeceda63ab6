// Variables editor: "Add variable" clones the blank-row template instead of
// a round trip, and a row marked sensitive hides what is typed. Without this
// file the same form works through plain posts.
(function () {
  "use strict";

  function addRow(rows, template) {
    var index = String(Number(rows.getAttribute("data-next")) || rows.children.length);
    rows.setAttribute("data-next", String(Number(index) + 1));
    var html = template.innerHTML.split("__i__").join(index);
    var holder = document.createElement("tbody");
    holder.innerHTML = html;
    var row = holder.firstElementChild;
    if (!row) return;
    rows.appendChild(row);
    var name = row.querySelector('input[type="text"]');
    if (name) name.focus();
  }

  // A sensitive row's value becomes a password input (and back), keeping
  // its name, id and what was typed.
  function toggleSensitive(box) {
    var cell = box.closest("tr") && box.closest("tr").querySelector("td.var-value");
    if (!cell || cell.querySelector(".secret-set")) return;
    var current = cell.querySelector("textarea, input");
    if (!current) return;
    var next;
    if (box.checked && current.tagName === "TEXTAREA") {
      next = document.createElement("input");
      next.type = "password";
      next.autocomplete = "new-password";
      next.placeholder = "Sensitive value";
    } else if (!box.checked && current.tagName === "INPUT") {
      next = document.createElement("textarea");
      next.rows = 1;
      next.spellcheck = false;
    } else {
      return;
    }
    next.id = current.id;
    next.name = current.name;
    next.value = current.value;
    current.replaceWith(next);
  }

  function init() {
    var form = document.querySelector("form.var-editor");
    if (!form) return;
    var rows = form.querySelector("#var-rows");
    var template = form.querySelector("#var-row-template");
    var add = form.querySelector("#add-variable");
    if (rows && template && add) {
      add.addEventListener("click", function (e) {
        e.preventDefault();
        addRow(rows, template);
      });
    }
    form.addEventListener("change", function (e) {
      var t = e.target;
      if (t && t.matches && t.matches("input[data-sensitive]")) toggleSensitive(t);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
