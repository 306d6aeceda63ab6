// Library: uploads a package with a progress bar. Without this script the
// upload form posts as it is and the server answers the same way.
(function () {
  "use strict";

  function byId(id) { return document.getElementById(id); }

  function show(text) {
    var status = byId("upload-status");
    if (status) { status.textContent = text; status.hidden = false; }
  }

  // A refused upload: the server's own form, with its message beside the
  // file input, takes the place of this one.
  function refused(xhr) {
    var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
    var theirs = doc.getElementById("upload-panel");
    var mine = byId("upload-panel");
    if (theirs && mine) {
      mine.replaceWith(document.importNode(theirs, true));
      var input = byId("package-file");
      if (input) { input.focus(); }
      return;
    }
    var lead = doc.querySelector(".lead");
    show("The upload was refused: " + (lead ? lead.textContent : xhr.status + " " + xhr.statusText));
    byId("upload-package").disabled = false;
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (form.id !== "upload-form" || !window.FormData || !window.XMLHttpRequest) { return; }
    var input = byId("package-file");
    // No file: the server says so beside the input.
    if (!input || !input.files || !input.files.length) { return; }
    e.preventDefault();

    var box = byId("upload-progress");
    var bar = byId("upload-progress-bar");
    var percent = byId("upload-percent");
    var button = byId("upload-package");
    var status = byId("upload-status");
    if (status) { status.hidden = true; }
    box.hidden = false;
    button.disabled = true;

    var xhr = new XMLHttpRequest();
    xhr.upload.addEventListener("progress", function (ev) {
      if (!ev.lengthComputable) { return; }
      var p = Math.floor((ev.loaded * 100) / ev.total);
      bar.value = p;
      percent.textContent = p + "%";
    });
    xhr.addEventListener("load", function () {
      // Success redirects to the package's page, which the request followed.
      if (xhr.status >= 200 && xhr.status < 300 && xhr.responseURL) {
        window.location.assign(xhr.responseURL);
      } else {
        refused(xhr);
      }
    });
    xhr.addEventListener("error", function () {
      box.hidden = true;
      button.disabled = false;
      show("The upload failed: the connection to the server was lost.");
    });
    xhr.open("POST", form.action);
    xhr.send(new FormData(form));
  });
})();
