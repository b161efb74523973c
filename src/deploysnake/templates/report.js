// Charts are embedded when they come into view: those of a model section that is closed (<details>)
// wait until it is opened, so a report of many models opens without drawing every chart first.
(function () {
  var waiting = new Map(); // closed <details> -> [[selector, spec, options], ...]
  function draw(selector, spec, options) {
    var div = document.querySelector(selector);
    return vegaEmbed(selector, spec, options).catch(function (e) {
      div.setAttribute('data-error', String(e));
    });
  }
  window.embedChart = function (selector, spec, options) {
    var closed = document.querySelector(selector).closest('details:not([open])');
    if (!closed) return draw(selector, spec, options);
    if (!waiting.has(closed)) {
      waiting.set(closed, []);
      closed.addEventListener('toggle', function () {
        if (!closed.open) return;
        var queued = waiting.get(closed) || [];
        waiting.delete(closed);
        queued.forEach(function (args) { embedChart.apply(null, args); });
      });
    }
    waiting.get(closed).push([selector, spec, options]);
  };
  // A link into a closed model section (the contents, a shared URL) opens it.
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var node = id && document.getElementById(id);
    for (; node; node = node.parentElement) {
      if (node.tagName === 'DETAILS') node.open = true;
    }
  }
  window.addEventListener('hashchange', openTarget);
  document.addEventListener('DOMContentLoaded', openTarget);
})();
