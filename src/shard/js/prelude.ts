/**
 * The JavaScript evaluated first in every QuickJS context of the sandbox (one context
 * per compiled design document). It defines CouchDB's query-server API as globals
 * (`emit`, `log`, `sum`, `toJSON`, `isArray`, `require`) and evaluates to one
 * dispatcher function, `(op, json) => json`, which the worker keeps as a handle (it
 * is never reachable from user code). Everything crosses the boundary as JSON text:
 * one string in, one string out per call, whatever the batch size.
 *
 * The dispatcher answers three parts separated by newlines: a kind, the `log()` lines
 * as a JSON array, and a payload:
 * - `ok`: the payload is the result as JSON text
 * - `compile`: a function does not compile; the payload is the reason
 * - `exception`: user code threw where the whole call fails; the payload is the reason
 * An out-of-memory error or an interrupt is re-thrown and seen by the worker as an
 * error of the call itself.
 */
export const prelude = String.raw`(function () {
  'use strict';
  var LOG_LINES_MAX = 1000;
  var LOG_LINE_CHARS_MAX = 10000;
  var BUILTIN_REDUCES = ['_sum', '_count', '_stats', '_approx_count_distinct'];
  var geval = eval;
  var hasOwn = Object.prototype.hasOwnProperty;
  var logs = [];
  var emitted = null;
  var maps = Object.create(null);
  var reduces = Object.create(null);
  var filters = Object.create(null);
  var vdu = null;
  var ddocRoot = null;
  var libRoot = null;
  var ddocRequire = null;
  var libRequire = null;

  function CompileFailure(reason) { this.reason = reason; }

  function describe(e) {
    if (e && typeof e === 'object' && typeof e.name === 'string' && typeof e.message === 'string') {
      return e.name + ': ' + e.message;
    }
    try { var s = JSON.stringify(e); if (typeof s === 'string') return s; } catch (ignored) {}
    return String(e);
  }

  function isFatal(e) {
    return e instanceof InternalError && (e.message === 'out of memory' || e.message === 'interrupted');
  }

  function compileFunction(source, what) {
    if (typeof source !== 'string') throw new CompileFailure(what + ' must be a string of JavaScript');
    var f;
    try {
      f = geval('(' + source + '\n)');
    } catch (e) {
      if (isFatal(e)) throw e;
      throw new CompileFailure(what + ': ' + describe(e));
    }
    if (typeof f !== 'function') throw new CompileFailure(what + ' does not evaluate to a function');
    return f;
  }

  // CommonJS modules stored in the design document, CouchDB's path form:
  // require('views/lib/foo'), and './x' or '../x' relative to the requiring module.
  function makeRequire(root) {
    var cache = Object.create(null);
    function load(path, from) {
      if (typeof path !== 'string') throw new Error('require: the module path must be a string');
      var segs = path.split('/');
      var parts = segs[0] === '.' || segs[0] === '..' ? from.slice(0, -1) : [];
      for (var i = 0; i < segs.length; i++) {
        var seg = segs[i];
        if (seg === '' || seg === '.') continue;
        if (seg === '..') {
          if (parts.length === 0) throw new Error('require: invalid module path ' + path);
          parts.pop();
        } else parts.push(seg);
      }
      var id = parts.join('/');
      if (hasOwn.call(cache, id)) return cache[id].exports;
      var node = root;
      for (var j = 0; j < parts.length; j++) {
        if (node === null || typeof node !== 'object' || !hasOwn.call(node, parts[j])) {
          throw new Error('require: module not found: ' + path);
        }
        node = node[parts[j]];
      }
      if (typeof node !== 'string') throw new Error('require: ' + path + ' is not a module (a string of JavaScript)');
      var fn;
      try {
        fn = geval('(function (module, exports, require) {' + node + '\n})');
      } catch (e) {
        if (isFatal(e)) throw e;
        throw new Error('require: compilation of ' + id + ' failed: ' + describe(e));
      }
      var module = { id: id, exports: {} };
      cache[id] = module;
      try {
        fn.call(module.exports, module, module.exports, function (p) { return load(p, parts); });
      } catch (e) {
        delete cache[id];
        throw e;
      }
      return module.exports;
    }
    return function require(path) { return load(path, []); };
  }

  function freeze(value) {
    if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
      Object.freeze(value);
      for (var k in value) freeze(value[k]);
    }
    return value;
  }

  globalThis.emit = function emit(key, value) {
    if (emitted === null) throw new Error('emit() is only available in a map function');
    emitted.push([key === undefined ? null : key, value === undefined ? null : value]);
  };
  globalThis.log = function log(message) {
    if (logs.length >= LOG_LINES_MAX) return;
    var line = typeof message === 'string' ? message : describe(message);
    logs.push(line.length > LOG_LINE_CHARS_MAX ? line.slice(0, LOG_LINE_CHARS_MAX) : line);
  };
  globalThis.sum = function sum(values) {
    var total = 0;
    for (var i = 0; i < values.length; i++) total += values[i];
    return total;
  };
  globalThis.toJSON = function toJSON(value) { return JSON.stringify(value); };
  globalThis.isArray = function isArray(value) { return Array.isArray(value); };
  globalThis.require = function require() { throw new Error('require() is only available inside design document functions'); };

  function compile(ddoc) {
    if (ddoc === null || typeof ddoc !== 'object' || Array.isArray(ddoc)) throw new CompileFailure('the design document must be an object');
    ddocRoot = ddoc;
    var info = { views: {}, filters: [], validate: false };
    var views = ddoc.views;
    if (views !== undefined) {
      if (views === null || typeof views !== 'object' || Array.isArray(views)) throw new CompileFailure('views must be an object');
      libRoot = { views: { lib: hasOwn.call(views, 'lib') ? views.lib : undefined } };
      for (var name in views) {
        if (!hasOwn.call(views, name) || name === 'lib') continue;
        var view = views[name];
        if (view === null || typeof view !== 'object') throw new CompileFailure('view ' + name + ' must be an object');
        maps[name] = compileFunction(view.map, 'map function of view ' + name);
        var reduce = view.reduce;
        if (reduce === undefined) info.views[name] = { reduce: null };
        else if (typeof reduce === 'string' && reduce.trim().charAt(0) === '_') {
          var builtin = reduce.trim();
          if (BUILTIN_REDUCES.indexOf(builtin) < 0) throw new CompileFailure('unknown built-in reduce function ' + builtin + ' in view ' + name);
          info.views[name] = { reduce: builtin };
        } else {
          reduces[name] = compileFunction(reduce, 'reduce function of view ' + name);
          info.views[name] = { reduce: 'js' };
        }
      }
    }
    var fs = ddoc.filters;
    if (fs !== undefined) {
      if (fs === null || typeof fs !== 'object' || Array.isArray(fs)) throw new CompileFailure('filters must be an object');
      for (var fname in fs) {
        if (!hasOwn.call(fs, fname)) continue;
        // An object beside the filters is a tree of CommonJS modules (CouchDB allows them).
        if (fs[fname] !== null && typeof fs[fname] === 'object' && !Array.isArray(fs[fname])) continue;
        filters[fname] = compileFunction(fs[fname], 'filter ' + fname);
        info.filters.push(fname);
      }
    }
    if (ddoc.validate_doc_update !== undefined) {
      vdu = compileFunction(ddoc.validate_doc_update, 'validate_doc_update');
      info.validate = true;
    }
    libRequire = makeRequire(libRoot || { views: {} });
    ddocRequire = makeRequire(ddocRoot);
    return JSON.stringify(info);
  }

  function lookup(table, name, what) {
    if (typeof name !== 'string' || !(name in table)) throw new Error('no ' + what + ' ' + name + ' in this design document');
    return table[name];
  }

  function map(input) {
    var fns = [];
    for (var v = 0; v < input.views.length; v++) fns.push(lookup(maps, input.views[v], 'map function of view'));
    globalThis.require = libRequire;
    var out = [];
    var docs = input.docs;
    for (var d = 0; d < docs.length; d++) {
      var doc = freeze(docs[d]);
      var perView = [];
      for (var f = 0; f < fns.length; f++) {
        emitted = [];
        try {
          fns[f](doc);
          perView.push(JSON.stringify(emitted));
        } catch (e) {
          if (isFatal(e)) throw e;
          perView.push(JSON.stringify({ error: describe(e) }));
        }
      }
      emitted = null;
      out.push('[' + perView.join(',') + ']');
    }
    return '[' + out.join(',') + ']';
  }

  function result(value) { return value === undefined ? 'null' : JSON.stringify(value); }

  function reduce(input) {
    var fn = lookup(reduces, input.view, 'JavaScript reduce function of view');
    globalThis.require = libRequire;
    return result(fn(input.keys, input.values, input.rereduce));
  }

  function filter(input) {
    var fn = lookup(filters, input.name, 'filter');
    globalThis.require = ddocRequire;
    var out = [];
    for (var d = 0; d < input.docs.length; d++) out.push(fn(freeze(input.docs[d]), input.req) ? true : false);
    return JSON.stringify(out);
  }

  function validate(input) {
    if (vdu === null) throw new Error('this design document has no validate_doc_update');
    globalThis.require = ddocRequire;
    try {
      vdu(freeze(input.newDoc), freeze(input.oldDoc), freeze(input.userCtx), freeze(input.secObj));
      return '{"ok":true}';
    } catch (e) {
      if (e !== null && typeof e === 'object' && !isFatal(e)) {
        if (e.forbidden !== undefined) return JSON.stringify({ forbidden: typeof e.forbidden === 'string' ? e.forbidden : describe(e.forbidden) });
        if (e.unauthorized !== undefined) return JSON.stringify({ unauthorized: typeof e.unauthorized === 'string' ? e.unauthorized : describe(e.unauthorized) });
      }
      throw e;
    }
  }

  // Many documents in one call: each answers ok, the {forbidden} or {unauthorized} it
  // threw, {error} for an Error it threw, or {unknown} (the message) for any other
  // value it threw; that document fails, not the batch.
  function validateMany(input) {
    if (vdu === null) throw new Error('this design document has no validate_doc_update');
    globalThis.require = ddocRequire;
    var userCtx = freeze(input.userCtx);
    var secObj = freeze(input.secObj);
    var out = [];
    for (var d = 0; d < input.docs.length; d++) {
      var pair = input.docs[d];
      try {
        vdu(freeze(pair[0]), freeze(pair[1] === undefined ? null : pair[1]), userCtx, secObj);
        out.push('{"ok":true}');
      } catch (e) {
        if (isFatal(e)) throw e;
        if (e !== null && typeof e === 'object' && e.forbidden !== undefined) {
          out.push(JSON.stringify({ forbidden: typeof e.forbidden === 'string' ? e.forbidden : describe(e.forbidden) }));
        } else if (e !== null && typeof e === 'object' && e.unauthorized !== undefined) {
          out.push(JSON.stringify({ unauthorized: typeof e.unauthorized === 'string' ? e.unauthorized : describe(e.unauthorized) }));
        } else if (e instanceof Error) {
          out.push(JSON.stringify({ error: describe(e) }));
        } else {
          // A string or another object, as CouchDB reports them: its (first) value.
          var keys = e !== null && typeof e === 'object' ? Object.keys(e) : [];
          var value = keys.length > 0 ? e[keys[0]] : e;
          out.push(JSON.stringify({ unknown: typeof value === 'string' ? value : describe(value) }));
        }
      }
    }
    return '[' + out.join(',') + ']';
  }

  var ops = { compile: compile, map: map, reduce: reduce, filter: filter, validate: validate, validateMany: validateMany };

  return function dispatch(op, json) {
    logs = [];
    emitted = null;
    var kind;
    var payload;
    try {
      payload = ops[op](JSON.parse(json));
      kind = 'ok';
    } catch (e) {
      if (isFatal(e)) throw e;
      kind = e instanceof CompileFailure ? 'compile' : 'exception';
      payload = e instanceof CompileFailure ? e.reason : describe(e);
    } finally {
      globalThis.require = function require() { throw new Error('require() is only available inside design document functions'); };
    }
    // JSON text holds no raw newline, so two newlines delimit the three parts.
    return kind + '\n' + JSON.stringify(logs) + '\n' + payload;
  };
})()`;
