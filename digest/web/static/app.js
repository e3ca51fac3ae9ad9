// Live rule preview: as you type, ask the server which recent papers the rules match.
// The page works without this file (the Preview button posts the form).
//
// For screen readers: only #preview-status is a live region, and it gets one short line ("19 papers of
// the last 7 days match.", "Line 1, character 7: ..."), so a pause in typing never re-reads the list.
// While the preview shows a problem, the rules box is aria-invalid and described by that line.
(function () {
  "use strict";
  var box = document.getElementById("rules");
  var status = document.getElementById("preview-status");
  var results = document.getElementById("preview");
  if (!box || !status || !results || !window.fetch || !window.DOMParser) { return; }
  var timer = null;
  var pending = null;
  var last = null;

  function withoutId(list, id) {
    return (list || "").split(/\s+/).filter(function (x) { return x && x !== id; });
  }

  // The error the server showed after a submit is about text that the visitor has now changed.
  function dropServerError() {
    var stale = document.getElementById("rules-error");
    if (stale) { stale.parentNode.removeChild(stale); }
    var ids = withoutId(box.getAttribute("aria-describedby"), "rules-error");
    box.setAttribute("aria-describedby", ids.join(" "));
  }

  function markRules(problem) {
    var ids = withoutId(box.getAttribute("aria-describedby"), "preview-status");
    if (problem) {
      box.setAttribute("aria-invalid", "true");
      ids.unshift("preview-status");
    } else if (!document.getElementById("rules-error")) {
      box.removeAttribute("aria-invalid");
    }
    if (ids.length) { box.setAttribute("aria-describedby", ids.join(" ")); }
    else { box.removeAttribute("aria-describedby"); }
  }

  function say(html) {
    // Only a change is written: the same line again would be announced again.
    if (status.innerHTML !== html) { status.innerHTML = html; }
  }

  function show(html) {
    // The fragment is rendered and escaped by the server's templates; DOMParser runs no script.
    var doc = new DOMParser().parseFromString(html, "text/html");
    var line = doc.getElementById("preview-status-part");
    var part = doc.getElementById("preview-results-part");
    if (!line || !part) {
      // Not a preview (too many requests): say why, keep the last results.
      var text = (doc.body && doc.body.textContent || "").trim();
      status.textContent = text || "The preview is not available right now.";
      return;
    }
    results.innerHTML = part.innerHTML;
    say(line.innerHTML);
    markRules(part.querySelector(".problems") !== null);
  }

  function refresh() {
    var value = box.value;
    if (value === last) { return; }
    last = value;
    if (pending) { pending.abort(); }
    pending = new AbortController();
    results.setAttribute("aria-busy", "true");
    fetch("/preview?rules=" + encodeURIComponent(value), {
      signal: pending.signal,
      credentials: "same-origin",
      headers: { "Accept": "text/html" }
    }).then(function (response) {
      return response.text();
    }).then(function (html) {
      show(html);
      results.removeAttribute("aria-busy");
    }).catch(function (error) {
      if (error && error.name === "AbortError") { return; }
      results.removeAttribute("aria-busy");
    });
  }

  box.addEventListener("input", function () {
    dropServerError();
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refresh, 350);
  });
  if (box.value.trim() !== "" && !results.querySelector(".papers, .problems")) { refresh(); }
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
