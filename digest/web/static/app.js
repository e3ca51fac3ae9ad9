// Live rule preview: as you type, ask the server which recent papers the rules match.
// The page works without this file (the Preview button posts the form).
(function () {
  "use strict";
  var box = document.getElementById("rules");
  var target = document.getElementById("preview");
  if (!box || !target || !window.fetch) { return; }
  var timer = null;
  var pending = null;
  var last = null;

  function refresh() {
    var value = box.value;
    if (value === last) { return; }
    last = value;
    if (pending) { pending.abort(); }
    pending = new AbortController();
    target.setAttribute("aria-busy", "true");
    fetch("/preview?rules=" + encodeURIComponent(value), {
      signal: pending.signal,
      credentials: "same-origin",
      headers: { "Accept": "text/html" }
    }).then(function (response) {
      return response.text();
    }).then(function (html) {
      // The fragment is rendered and escaped by the server's templates.
      target.innerHTML = html;
      target.removeAttribute("aria-busy");
    }).catch(function (error) {
      if (error && error.name === "AbortError") { return; }
      target.removeAttribute("aria-busy");
    });
  }

  box.addEventListener("input", function () {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refresh, 350);
  });
  if (box.value.trim() !== "" && !target.querySelector(".papers, .problems, .count")) { refresh(); }
})();

// Time zone: on a fresh subscribe form, pre-select the browser's own zone (the server's default stays
// when the browser's zone is not in the list, or without JavaScript).
(function () {
  "use strict";
  var select = document.getElementById("timezone");
  if (!select || select.getAttribute("data-prefill") !== "1" || !window.Intl || !Intl.DateTimeFormat) { return; }
  var zone = null;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  for (var i = 0; i < select.options.length; i++) {
    if (select.options[i].value === zone) { select.value = zone; return; }
  }
})();
