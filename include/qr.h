#ifndef AUTH_QR_H                /* qr.h: QR codes as SVG documents */
#define AUTH_QR_H

/* An SVG document (UTF-8, NUL-terminated) of `text` as a QR code (byte
 * mode, error correction level M, a quiet zone of four modules), for a
 * web page to show as it is. NULL when `text` does not fit a QR code,
 * memory runs out or libqrencode cannot be opened (logged once,
 * `mfa.qr_unavailable`). Caller frees with free(). */
char *qr_svg(const char *text);

#endif
