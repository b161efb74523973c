// Each chart's spec is inert JSON (a script element of type application/json, class chart-spec)
// beside its div. A chart is drawn once no closed <details> holds it: at load for the open sections,
// and when a model section is opened for its own, so a report of many models opens without drawing
// every chart.
(function () {
  var options = null;
  function draw(spec) {
    var div = document.getElementById(spec.getAttribute('data-chart'));
    if (!div || div.hasAttribute('data-drawn')) return;
    div.setAttribute('data-drawn', '');
    try {
      options = options || JSON.parse(document.getElementById('embed-options').textContent);
      vegaEmbed(div, JSON.parse(spec.textContent), options).catch(function (e) {
        div.setAttribute('data-error', String(e));
      });
    } catch (e) {
      div.setAttribute('data-error', String(e));
    }
  }
  function drawOpen(root) {
    root.querySelectorAll('script.chart-spec').forEach(function (spec) {
      if (!spec.closest('details:not([open])')) draw(spec);
    });
  }
  // 'toggle' does not bubble; a listener on the capture phase sees every <details> that opens.
  document.addEventListener('toggle', function (event) {
    if (event.target.open) drawOpen(event.target);
  }, true);
  // A link into a closed model section (the contents, a shared URL) opens it.
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var node = id && document.getElementById(id);
    for (; node; node = node.parentElement) {
      if (node.tagName === 'DETAILS') node.open = true;
    }
  }
  window.addEventListener('hashchange', openTarget);
  document.addEventListener('DOMContentLoaded', function () {
    openTarget();
    drawOpen(document);
  });
})();
