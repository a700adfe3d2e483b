// The counter-offer editor previews as the agent types: the form's values go to the preview
// route and its answer replaces the preview. Without this script the Preview button does the
// same with a page load.
(function () {
  "use strict";
  var form = document.getElementById("counter-editor");
  var target = document.getElementById("counter-preview");
  if (!form || !target || !window.fetch || !window.URLSearchParams) {
    return;
  }
  var timer = null;
  var latest = 0;
  var shown = new URLSearchParams(new FormData(form)).toString();

  function refresh() {
    var query = new URLSearchParams(new FormData(form)).toString();
    if (query === shown) {
      return; // nothing changed: keep the preview (and whatever is typed in its send form)
    }
    shown = query;
    var ticket = ++latest;
    fetch(target.getAttribute("data-preview-url") + "?" + query, {
      credentials: "same-origin",
      headers: { "Accept": "text/html" }
    })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html !== null && ticket === latest) {
          // The note and message typed so far survive a refresh of the terms.
          var typed = {};
          Array.prototype.forEach.call(target.querySelectorAll("textarea"), function (box) {
            typed[box.id] = box.value;
          });
          target.innerHTML = html;
          Object.keys(typed).forEach(function (id) {
            var box = document.getElementById(id);
            if (box) { box.value = typed[id]; }
          });
        }
      })
      .catch(function () { /* the Preview button still works */ });
  }

  form.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 350);
  });
  form.addEventListener("change", function () {
    window.clearTimeout(timer);
    refresh();
  });
})();
