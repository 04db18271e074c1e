// The API reference: Swagger UI (vendored, no internet needed) reading this server's /openapi.json.
// "Try it out" needs the token: the Authorize button takes it.
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
document.body.dataset.ready = "1";
