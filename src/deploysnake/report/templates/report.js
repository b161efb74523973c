// Each chart's spec is inert JSON (a script element of type application/json, class chart-spec)
// beside its div. A chart is drawn once no closed <details> holds it: at load for the open sections,
// and when a model section is opened for its own, so a report of many models opens without drawing
// every chart. In a large report each closed model section is packed (gzip, then base64, in a
// script element of class packed-section; report.py's PACK_ABOVE_BYTES): it is unpacked into its
// <details> the first time that opens, then its charts are drawn.
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
  // A packed section's HTML: base64 -> gzip -> UTF-8 text.
  function unpackText(b64) {
    var raw = atob(b64.trim());
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).text();
  }
  // Unpack the section in `details` (once); resolves when its HTML is in the page.
  function unpack(details) {
    var packed = details.querySelector(':scope > script.packed-section');
    if (!packed) return Promise.resolve();
    if (details.unpacking) return details.unpacking;
    if (typeof DecompressionStream === 'undefined') {
      details.insertAdjacentHTML('beforeend', '<p class="note">This browser cannot unpack ' +
        'the section (it needs DecompressionStream: Chrome 80, Firefox 113, Safari 16.4 or ' +
        'newer).</p>');
      packed.remove();
      return Promise.resolve();
    }
    details.unpacking = unpackText(packed.textContent).then(function (text) {
      packed.remove();
      details.insertAdjacentHTML('beforeend', text);
    }).catch(function (e) {
      details.setAttribute('data-error', String(e));
    });
    return details.unpacking;
  }
  // 'toggle' does not bubble; a listener on the capture phase sees every <details> that opens.
  document.addEventListener('toggle', function (event) {
    var details = event.target;
    if (!details.open) return;
    unpack(details).then(function () {
      drawOpen(details);
      scrollToTarget(details);
    });
  }, true);
  function targetId() {
    return decodeURIComponent(location.hash.slice(1));
  }
  // Once a packed section holding the link's target is unpacked, go to the target.
  function scrollToTarget(details) {
    var id = targetId();
    var node = id && document.getElementById(id);
    if (node && details.contains(node)) node.scrollIntoView();
  }
  // A link into a closed model section (the contents, a shared URL) opens it; a packed section
  // lists the ids it holds (data-ids).
  function openTarget() {
    var id = targetId();
    if (!id) return;
    var node = document.getElementById(id);
    if (!node) {
      node = Array.prototype.find.call(document.querySelectorAll('details[data-ids]'),
        function (d) { return d.getAttribute('data-ids').split(' ').indexOf(id) >= 0; });
    }
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
