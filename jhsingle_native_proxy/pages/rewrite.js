/* jhsingle-native-proxy, --rewrite-urls: URLs that a page's scripts build at run time go under
   the prefix this server is reached at (/user/NAME/), as the server does for those in the HTML
   and CSS it relays.

   Inserted first in <head>, so it runs before the page's own scripts. The prefix is read from
   this script's own URL ({prefix}_jhsnp/rewrite.js), so the file is the same for every server
   and is cached by its version. What it changes: a root-absolute URL ("/api/x") and an absolute
   one naming this page's own host ("http://host/api/x", "ws://host/ws", "//host/x") that is not
   under the prefix yet. Relative URLs, URLs already under the prefix or under a root its tag's
   data-keep names (the hub's pages), other hosts, data:, blob: and the rest are left as they
   are. It reads nothing and sends nothing of its own. */
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me || window.__jhsnpRewriteUrls) return;
  var mark = "_jhsnp/rewrite.js";
  var ownPath = new URL(me.src, location.href).pathname;
  if (ownPath.slice(-mark.length) !== mark) return;
  var prefix = ownPath.slice(0, -mark.length); // "/user/alice/"
  if (prefix.charAt(prefix.length - 1) !== "/" || prefix === "/") return;
  var base = prefix.slice(0, -1);
  window.__jhsnpRewriteUrls = prefix;
  // Roots that stay as they are besides the prefix: the hub's own pages (/hub/), which the
  // server names on this tag for its hub.
  var kept = (me.getAttribute("data-keep") || "").split(" ").filter(function (root) {
    return root.charAt(0) === "/" && root.length > 1;
  });

  function isUnder(path) {
    if (path === base || path.indexOf(prefix) === 0) return true;
    for (var i = 0; i < kept.length; i++) {
      var root = kept[i];
      if (path === root.replace(/\/$/, "") || path.indexOf(root) === 0) return true;
    }
    return false;
  }

  function sameHost(url) {
    var p = url.protocol;
    if (p === "http:" || p === "https:") return url.origin === location.origin;
    if (p === "ws:" || p === "wss:") return url.host === location.host;
    return false;
  }

  /* The URL to use instead of `value`, or `value` itself when it needs no change. */
  function fix(value) {
    if (value instanceof URL) {
      var changed = fix(value.href);
      return changed === value.href ? value : new URL(changed);
    }
    if (typeof value !== "string") return value;
    var s = value.replace(/^[\s\u0000-\u001f]+/, "");
    if (s.charAt(0) === "/" && s.charAt(1) !== "/" && s.charAt(1) !== "\\") {
      var path = s.split(/[?#]/, 1)[0];
      return isUnder(path) ? value : prefix + s.slice(1);
    }
    if (!/^([a-z][a-z0-9+.-]*:)?[\/\\][\/\\]/i.test(s)) return value; // relative, data:, blob:
    var url;
    try {
      url = new URL(s, location.href);
    } catch (e) {
      return value;
    }
    if (!sameHost(url) || isUnder(url.pathname)) return value;
    url.pathname = prefix + url.pathname.slice(1);
    return url.href;
  }

  function fixSrcset(value) {
    if (typeof value !== "string") return value;
    return value
      .split(",")
      .map(function (candidate) {
        var m = /^(\s*)(\S+)(.*)$/.exec(candidate);
        return m ? m[1] + fix(m[2]) + m[3] : candidate;
      })
      .join(",");
  }

  var nativeFetch = window.fetch;
  if (nativeFetch) {
    window.fetch = function (input, init) {
      if (typeof Request !== "undefined" && input instanceof Request) {
        var url = fix(input.url);
        if (url !== input.url) input = new Request(url, input);
      } else {
        input = fix(input);
      }
      return nativeFetch.call(this, input, init);
    };
  }

  var xhrOpen = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, url) {
    var args = Array.prototype.slice.call(arguments);
    args[1] = fix(url);
    return xhrOpen.apply(this, args);
  };

  /* Constructors wrapped by a subclass: `instanceof`, constants and prototypes stay the page's. */
  function wrapConstructor(name) {
    var Native = window[name];
    if (typeof Native !== "function") return;
    var Wrapped = class extends Native {
      constructor(url) {
        var args = Array.prototype.slice.call(arguments);
        args[0] = fix(url);
        super(...args);
      }
    };
    Object.defineProperty(Wrapped, "name", { value: name });
    window[name] = Wrapped;
  }
  ["WebSocket", "EventSource", "Worker", "SharedWorker"].forEach(wrapConstructor);

  if (navigator.sendBeacon) {
    var beacon = navigator.sendBeacon;
    navigator.sendBeacon = function (url, data) {
      return beacon.call(navigator, fix(url), data);
    };
  }

  if (navigator.serviceWorker && navigator.serviceWorker.register) {
    var register = navigator.serviceWorker.register;
    navigator.serviceWorker.register = function (url, options) {
      if (options && options.scope) options = Object.assign({}, options, { scope: fix(options.scope) });
      return register.call(navigator.serviceWorker, fix(url), options);
    };
  }

  ["pushState", "replaceState"].forEach(function (name) {
    var native = history[name];
    history[name] = function (state, title, url) {
      if (arguments.length > 2 && url != null) return native.call(history, state, title, fix(url));
      return native.apply(history, arguments);
    };
  });

  var nativeOpen = window.open;
  window.open = function (url) {
    var args = Array.prototype.slice.call(arguments);
    args[0] = fix(url);
    return nativeOpen.apply(window, args);
  };

  var URL_ATTRIBUTES = { src: fix, href: fix, action: fix, formaction: fix, poster: fix, srcset: fixSrcset };
  var setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    var fixer = typeof name === "string" && URL_ATTRIBUTES[name.toLowerCase()];
    if (fixer) value = fixer(String(value));
    else if (typeof name === "string" && name.toLowerCase() === "data" && this.tagName === "OBJECT")
      value = fix(String(value));
    return setAttribute.call(this, name, value);
  };

  /* Property setters (img.src = "/x.png"): the element prototypes that own them. */
  var PROPERTIES = [
    ["HTMLScriptElement", "src"],
    ["HTMLImageElement", "src"],
    ["HTMLImageElement", "srcset"],
    ["HTMLLinkElement", "href"],
    ["HTMLAnchorElement", "href"],
    ["HTMLAreaElement", "href"],
    ["HTMLIFrameElement", "src"],
    ["HTMLFrameElement", "src"],
    ["HTMLEmbedElement", "src"],
    ["HTMLObjectElement", "data"],
    ["HTMLFormElement", "action"],
    ["HTMLInputElement", "src"],
    ["HTMLInputElement", "formAction"],
    ["HTMLButtonElement", "formAction"],
    ["HTMLSourceElement", "src"],
    ["HTMLSourceElement", "srcset"],
    ["HTMLTrackElement", "src"],
    ["HTMLMediaElement", "src"], // <video> and <audio>
    ["HTMLVideoElement", "poster"],
  ];
  PROPERTIES.forEach(function (pair) {
    var type = window[pair[0]];
    var descriptor = type && Object.getOwnPropertyDescriptor(type.prototype, pair[1]);
    if (!descriptor || !descriptor.set || !descriptor.configurable) return;
    var fixer = pair[1] === "srcset" ? fixSrcset : fix;
    var set = descriptor.set;
    Object.defineProperty(type.prototype, pair[1], {
      configurable: true,
      enumerable: descriptor.enumerable,
      get: descriptor.get,
      set: function (value) {
        set.call(this, fixer(value));
      },
    });
  });

  /* Links and forms put into the page as HTML text (innerHTML) are fixed when they are used. */
  function fixTarget(element, attribute) {
    var value = element && element.getAttribute(attribute);
    if (value !== null && value !== undefined) {
      var fixed = fix(value);
      if (fixed !== value) setAttribute.call(element, attribute, fixed);
    }
  }
  document.addEventListener(
    "click",
    function (event) {
      var target = event.target;
      var link = target && target.closest ? target.closest("a[href], area[href]") : null;
      if (link) fixTarget(link, "href");
    },
    true
  );
  document.addEventListener(
    "submit",
    function (event) {
      fixTarget(event.target, "action");
      if (event.submitter) fixTarget(event.submitter, "formaction");
    },
    true
  );
})();
