// A module service worker hosting the engine, as WebLLM's service-worker example does
// (`new ServiceWorkerMLCEngineHandler()` at the top level). `?device=` picks the engine for the test.
import { ServiceWorkerMLCEngineHandler } from "/web/js/index.js";

const device = new URL(self.location.href).searchParams.get("device") ?? "auto";
new ServiceWorkerMLCEngineHandler({ device });
// Take control of the test page at once (the page waits for navigator.serviceWorker.controller).
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));
