// The optional drawn signature on the signing page: a canvas with the vendored signature_pad.
// What is drawn goes with the form as a PNG (a hidden field); Accord stores its SHA-256 as
// evidence. Without JavaScript the canvas stays hidden and signing works the same.
(function () {
  "use strict";
  var box = document.getElementById("signature-box");
  var canvas = document.getElementById("signature-canvas");
  var field = document.getElementById("signature");
  if (!box || !canvas || !field || typeof window.SignaturePad !== "function") {
    return;
  }
  box.hidden = false;
  var pad = new window.SignaturePad(canvas, { penColor: "#102a43" });

  function fit() {
    var ratio = Math.max(window.devicePixelRatio || 1, 1);
    var kept = pad.toData();
    canvas.width = canvas.offsetWidth * ratio;
    canvas.height = canvas.offsetHeight * ratio;
    canvas.getContext("2d").scale(ratio, ratio);
    pad.clear();
    pad.fromData(kept);
  }
  window.addEventListener("resize", fit);
  fit();

  document.getElementById("signature-clear").addEventListener("click", function () {
    pad.clear();
  });
  canvas.closest("form").addEventListener("submit", function () {
    field.value = pad.isEmpty() ? "" : pad.toDataURL("image/png");
  });
})();
