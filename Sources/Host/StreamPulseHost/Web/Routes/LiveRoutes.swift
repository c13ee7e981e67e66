import Foundation
import Hummingbird
import NIOCore
import ServiceLifecycle
import StreamPulseCore

/// Live updates (viewer, Server-Sent Events) and the live preview (admin, multipart JPEG for an `<img>`).
enum LiveRoutes {
    static func add(to router: some RouterMethods<WebContext>, _ web: WebServices) {
        addEvents(to: router, web)
        addPreview(to: router, web)
    }

    /// `GET /api/events`: Server-Sent Events of the streams that changed, per viewer (capped per account).
    static func addEvents(to router: some RouterMethods<WebContext>, _ web: WebServices) {
        router.group(.viewer, web).get("/api/events") { _, context -> Response in
            // A few tabs per person are plenty; thousands on one token would only hold connections.
            let holder = context.identity?.name ?? "?"
            guard web.liveStreams.count(holder) < web.liveStreams.limit else {
                return AccountRoutes.tooMany("\(web.liveStreams.limit) live-update streams are open for this account; close one", retryAfter: 5)
            }
            var headers = HTTPFields()
            headers[.contentType] = "text/event-stream"
            headers[.cacheControl] = "no-store"
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                // Counted only while the stream really runs, so a request that never got this far leaks nothing.
                guard web.liveStreams.open(holder) else {
                    try? await writer.finish(nil)
                    return
                }
                let subscriber = web.live.subscribe()
                // An event stream never ends by itself: it ends when the server shuts down gracefully.
                let stopping = StopFlag()
                await withGracefulShutdownHandler {
                    try? await events(to: &writer, subscriber: subscriber, stopping: stopping, web)
                } onGracefulShutdown: {
                    stopping.set()
                }
                web.live.unsubscribe(subscriber)
                web.liveStreams.close(holder)
                try? await writer.finish(nil)
            })
        }
    }

    /// `GET /api/streams/{id}/preview`: a live preview as multipart JPEG, shared by viewers of one stream.
    static func addPreview(to router: some RouterMethods<WebContext>, _ web: WebServices) {
        router.group(.admin, web).get("/api/streams/{id}/preview") { request, context -> Response in
            let id = try context.parameters.require("id")
            let seconds = try RequestSupport.double(request, "seconds", in: 1...30) ?? min(web.settings.current.previewSeconds, 30)
            let frames: AsyncStream<Data>
            do throws(PreviewHub.Refusal) {
                frames = try await web.previews.join(id, seconds: seconds)
            } catch {
                switch error {
                case .unknownStream:
                    return APIServer.json(["error": "no stream with id '\(id)'"], status: .notFound)
                case .busy(let cap):
                    return APIServer.json(["error": "\(cap) previews are running (the limit); try again in a few seconds"], status: .tooManyRequests)
                case .stopped:
                    return APIServer.json(["error": "previews are not running (the monitor is starting or shutting down)"], status: .serviceUnavailable)
                }
            }
            web.logger.info("preview of stream=\(id) for \(Int(seconds)) s by '\(context.identity?.name ?? "?")'")
            var headers = HTTPFields()
            headers[.contentType] = "multipart/x-mixed-replace; boundary=spframe"
            headers[.cacheControl] = "no-store"
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                do {
                    for await frame in frames {
                        var buffer = ByteBuffer(string: "--spframe\r\nContent-Type: image/jpeg\r\nContent-Length: \(frame.count)\r\n\r\n")
                        buffer.writeBytes(frame)
                        buffer.writeString("\r\n")
                        try await writer.write(buffer)
                    }
                    try await writer.write(ByteBuffer(string: "--spframe--\r\n"))
                } catch {}
                try? await writer.finish(nil)
            })
        }
    }

    /// Twice a second: the streams that changed since the last look, a reload notice, or a keep-alive.
    static func events(to writer: inout any ResponseBodyWriter, subscriber: Int, stopping: StopFlag,
                       _ web: WebServices) async throws {
        try await writer.write(ByteBuffer(string: "retry: 3000\nevent: hello\ndata: {}\n\n"))
        var quiet = 0
        while !Task.isCancelled && !stopping.isSet {
            try await Task.sleep(for: .milliseconds(500))
            let (ids, reload) = web.live.take(subscriber)
            if reload {
                try await writer.write(ByteBuffer(string: "event: reload\ndata: {}\n\n"))
                quiet = 0
            }
            if !ids.isEmpty {
                var snapshots: [StreamSnapshot] = []
                for id in ids {
                    guard var s = await web.engine.snapshot(id: id) else { continue }
                    if web.incidents?.inMaintenance(id) == true { s.maintenance = true }
                    snapshots.append(s)
                }
                var buffer = ByteBuffer(string: "event: streams\ndata: ")
                buffer.writeBytes(try Wire.encode(snapshots))
                buffer.writeString("\n\n")
                try await writer.write(buffer)
                quiet = 0
            } else {
                quiet += 1
                // A comment every 5 s keeps proxies from closing an idle stream, and finds a client that left
                // (the write fails), so its place under the per-account cap is freed.
                if quiet >= 10 {
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    quiet = 0
                }
            }
        }
    }
}
