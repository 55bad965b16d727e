/* qr.c: QR codes (libqrencode) drawn as one SVG path. The daemon does
 * not link libqrencode: only a TOTP setup draws a QR code, and every
 * start would pay for mapping it (README.md "Performance"); it is opened
 * on the first setup. The package still depends on libqrencode4. */
#include "qr.h"

#include <qrencode.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynlib.h"

#define QUIET 4                  /* modules of white border (ISO 18004) */

static struct {
    __typeof__(QRcode_encodeString) *QRcode_encodeString;
    __typeof__(QRcode_free) *QRcode_free;
} qrlib;
static const struct dynlib_name names[] = {
    { "QRcode_encodeString", offsetof(__typeof__(qrlib),
                                      QRcode_encodeString) },
    { "QRcode_free", offsetof(__typeof__(qrlib), QRcode_free) },
};
static struct dynlib lib = DYNLIB_INIT(
    "libqrencode.so.4", names, qrlib, "mfa.qr_unavailable",
    "libqrencode cannot be opened: TOTP setups fail with 500");

/* Appends formatted text to the growing buffer; false once it is full. */
__attribute__((format(printf, 4, 5)))
static bool put(char *buf, size_t cap, size_t *used, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*used >= cap)
        return false;
    va_start(ap, fmt);
    n = vsnprintf(buf + *used, cap - *used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *used) {
        *used = cap;
        return false;
    }
    *used += (size_t)n;
    return true;
}

char *qr_svg(const char *text)
{
    QRcode *qr;
    char *svg = NULL;
    const char *why;
    size_t cap, used = 0;
    int w, x, y, side, run;
    bool ok;

    qr = text && dynlib_load(&lib, &why)
             ? qrlib.QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8,
                                         1)
             : NULL;
    if (!qr)
        return NULL;
    w = qr->width;
    side = w + 2 * QUIET;
    /* header + one "Mx yhNv1h-Nz" (at most 28 bytes) per dark run */
    cap = 512 + (size_t)w * (size_t)w * 28;
    svg = malloc(cap);
    ok = svg != NULL &&
         put(svg, cap, &used,
             "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
             "viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
             "shape-rendering=\"crispEdges\">", side, side, side * 4,
             side * 4) &&
         put(svg, cap, &used, "<rect width=\"%d\" height=\"%d\" "
             "fill=\"#ffffff\"/><path fill=\"#000000\" d=\"", side, side);
    for (y = 0; ok && y < w; y++)
        for (x = 0; ok && x < w; x += run) {
            /* one rectangle per horizontal run of dark modules */
            for (run = 0; x + run < w && (qr->data[y * w + x + run] & 1);
                 run++)
                ;
            if (run > 0)
                ok = put(svg, cap, &used, "M%d %dh%dv1h-%dz", x + QUIET,
                         y + QUIET, run, run);
            else
                run = 1;
        }
    ok = ok && put(svg, cap, &used, "%s", "\"/></svg>");
    qrlib.QRcode_free(qr);
    if (!ok) {
        free(svg);
        return NULL;
    }
    return svg;
}
