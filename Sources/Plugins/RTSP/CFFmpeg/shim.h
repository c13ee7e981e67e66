#include <libavformat/avformat.h>
#include <libavcodec/avcodec.h>
#include <libswscale/swscale.h>
#include <libavutil/imgutils.h>
#include <libavutil/error.h>
#include <libavutil/log.h>
#include <libavutil/dict.h>
#include <libavutil/md5.h>
#include <stdarg.h>
#include <stdio.h>

/* Macros Swift cannot import. */
static inline int sp_averror(int e) { return AVERROR(e); }
static inline int sp_averror_eof(void) { return AVERROR_EOF; }
static inline int sp_averror_exit(void) { return AVERROR_EXIT; }
static inline int sp_averror_invaliddata(void) { return AVERROR_INVALIDDATA; }
static inline int sp_averror_http_unauthorized(void) { return AVERROR_HTTP_UNAUTHORIZED; }
static inline int sp_averror_http_forbidden(void) { return AVERROR_HTTP_FORBIDDEN; }
static inline int sp_averror_http_not_found(void) { return AVERROR_HTTP_NOT_FOUND; }
static inline int sp_averror_http_other_4xx(void) { return AVERROR_HTTP_OTHER_4XX; }
static inline int sp_averror_http_server_error(void) { return AVERROR_HTTP_SERVER_ERROR; }
static inline int sp_averror_eagain(void) { return AVERROR(EAGAIN); }
static inline int sp_vformat(char *buffer, size_t size, const char *format, va_list args) {
    return vsnprintf(buffer, size, format, args);
}
