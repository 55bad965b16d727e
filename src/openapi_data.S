/* The OpenAPI document, embedded so the daemon stays one binary. */
    .section .rodata
    .global auth_openapi_json
    .global auth_openapi_json_end
auth_openapi_json:
    .incbin OPENAPI_FILE
auth_openapi_json_end:
    .byte 0
    .section .note.GNU-stack,"",@progbits
