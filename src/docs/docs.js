/* Swagger UI over the OpenAPI document this daemon serves. A file rather
 * than an inline script, so the page's Content-Security-Policy can allow
 * scripts from 'self' only. */
"use strict";
window.addEventListener("load", function () {
    window.ui = SwaggerUIBundle({
        url: "openapi.json",
        dom_id: "#swagger-ui",
        deepLinking: true,
        validatorUrl: null,          /* never call validator.swagger.io */
        persistAuthorization: false  /* no token left in localStorage */
    });
});
