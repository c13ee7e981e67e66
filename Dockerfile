# StreamPulse container image (not built in this project's CI: no Docker engine there).
# Multi-stage on Debian-based Swift images: the dlopen'd plugins are Swift code and need the shared Swift
# runtime, so the host cannot be a fully static (musl, --static-swift-stdlib) binary.
FROM swift:6.3-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      pkg-config libavformat-dev libavcodec-dev libswscale-dev libavutil-dev libsqlite3-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN swift build -c release --product streampulse \
 && swift build -c release --product StreamPulseRTSP \
 && swift build -c release --product StreamPulseMJPEG \
 && mkdir -p /out/bin /out/plugins.d \
 && bin="$(swift build -c release --show-bin-path)" \
 && cp "$bin/streampulse" /out/bin/ \
 && cp "$bin/libStreamPulseRTSP.so" /out/plugins.d/rtsp.so \
 && cp "$bin/libStreamPulseMJPEG.so" /out/plugins.d/mjpeg.so

FROM swift:6.3-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libavformat59 libavcodec59 libswscale6 libavutil57 libsqlite3-0 curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data --shell /usr/sbin/nologin streampulse
COPY --from=build /out/bin/streampulse /usr/local/bin/streampulse
COPY --from=build /out/plugins.d /usr/local/lib/streampulse/plugins.d
# Mount config read-only at /config (config.yaml + secrets.yaml); history and accounts live in /data.
# First start: the one-time admin password is in the log and in /data/admin-password.txt, or pass
# -e STREAMPULSE_ADMIN_PASSWORD=... (used once).
VOLUME /data
USER streampulse
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/streampulse", "serve", "--config", "/config/config.yaml", "--data-dir", "/data", \
            "--plugins-dir", "/usr/local/lib/streampulse/plugins.d", "--listen", "0.0.0.0:8080"]
