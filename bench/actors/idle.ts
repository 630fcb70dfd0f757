/**
 * @module An empty Worker for the memory probe: it only answers, so the resident memory it adds
 * is the cost of one more isolate.
 */
self.onmessage = () => self.postMessage("ready");
