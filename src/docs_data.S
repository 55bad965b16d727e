/* Swagger UI (third_party/swagger-ui/) and its page (src/docs/), embedded
 * so that /docs loads nothing from another host and the daemon stays one
 * binary. Each blob is followed by a NUL. */
    .section .rodata
    .global auth_docs_html, auth_docs_html_end
    .global auth_docs_js, auth_docs_js_end
    .global auth_swagger_js, auth_swagger_js_end
    .global auth_swagger_css, auth_swagger_css_end
auth_docs_html:
    .incbin DOCS_HTML_FILE
auth_docs_html_end:
    .byte 0
auth_docs_js:
    .incbin DOCS_JS_FILE
auth_docs_js_end:
    .byte 0
auth_swagger_js:
    .incbin SWAGGER_JS_FILE
auth_swagger_js_end:
    .byte 0
auth_swagger_css:
    .incbin SWAGGER_CSS_FILE
auth_swagger_css_end:
    .byte 0
    .section .note.GNU-stack,"",@progbits
