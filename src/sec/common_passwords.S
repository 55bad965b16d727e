/* The common-password list, embedded so the daemon stays one binary. */
    .section .rodata
    .global auth_common_passwords
    .global auth_common_passwords_end
    .balign 16
auth_common_passwords:
    .incbin COMMON_PASSWORDS_FILE
auth_common_passwords_end:
    .byte 0
    .section .note.GNU-stack,"",@progbits
