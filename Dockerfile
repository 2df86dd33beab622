# syntax=docker/dockerfile:1
# tandem as a container (docs/reference.md §10):
#   docker build -t tandem .
#   docker run --rm -p 8080:8080 tandem
# Configuration is TANDEM__SECTION__KEY variables, e.g. -e TANDEM__RATE_LIMIT__PER_SECOND=20.
#
# Standalone with HTTPS (README, "Standalone with HTTPS"): tandem speaks TLS on 8443 and
# redirects plain HTTP from 8080; the host's 443 and 80 map onto them, so nothing in the
# container needs root or a capability. Certificates from files, mounted read-only:
#   docker run --rm -p 443:8443 -p 80:8080 -v /etc/tandem/tls:/tls:ro \
#     -e TANDEM__SERVER__PORT=8443 -e TANDEM__TLS__REDIRECT_PORT=8080 \
#     -e TANDEM__TLS__MODE=files -e TANDEM__TLS__CERT_FILE=/tls/fullchain.pem \
#     -e TANDEM__TLS__KEY_FILE=/tls/privkey.pem tandem
# The files must be readable by uid 10001 (e.g. chgrp 10001 and mode 0640 on the key); a
# renewed pair written in place is picked up without a restart. With ACME instead, keep the
# account and certificates in a volume (/var/lib/tandem/acme is created for uid 10001, so a
# named volume mounted there starts out writable) and put the [tls.acme] table in a mounted
# configuration file:
#   docker run --rm -p 443:8443 -p 80:8080 -v tandem-acme:/var/lib/tandem/acme \
#     -v /etc/tandem/tandem.toml:/etc/tandem/tandem.toml:ro tandem serve --config /etc/tandem/tandem.toml
# with server.port = 8443, tls.redirect_port = 8080, tls.mode = "acme" and
# tls.acme.cache_dir = "/var/lib/tandem/acme" in it. The CA reaches the redirect listener
# through the host's port 80 for the http-01 challenge.
#
# Every stage is Debian 12 (bookworm), so the binary links against the glibc it was built with.
# Bases are pinned to full versions (Rust 1.95.0, Debian point release 12.12), so a rebuild does
# not silently change compiler or OS; move them on purpose (Dependabot or Renovate), and pin the
# digests too (rust:1.95.0-slim-bookworm@sha256:...) for byte-for-byte reproducible builds.

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src

# Dependencies first, against placeholder sources: this layer (the slow part) is rebuilt only
# when Cargo.toml or Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

COPY src ./src
# COPY keeps the context's timestamps, which can be older than the placeholder build: touch so
# cargo rebuilds the crate itself.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && strip target/release/tandem

# The site, with .br/.gz/.zst siblings written at build time (brotli 11 is too slow to do per
# request). Siblings in the build context are ignored (.dockerignore) and rebuilt here, so a
# checkout's timestamps can never make one look stale. COPY keeps the checkout's modes: from a
# `umask 077` checkout the files are 0600 and the directories 0700, which uid 10001 (and nginx's
# www-data) cannot read, so the chmod makes everything world-readable (and nothing writable but
# by root) before the later stages copy it. chmod leaves modification times alone.
COPY htdocs ./htdocs
COPY public ./public
RUN ./target/release/tandem precompress htdocs public \
    && chmod -R u=rwX,go=rX htdocs public


# nginx in front of tandem, for deploy/compose.yaml (static.mode = "nginx"): Debian's nginx with
# the brotli_static module, nginx.conf.example pointed at the `tandem` service, and the same
# precompressed site. Built only when asked for (`--target nginx`); `docker build .` skips it.
FROM debian:12.12-slim AS nginx
# Unpinned on purpose: Debian's security updates replace the exact versions in the archive.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx libnginx-mod-http-brotli-static \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
COPY --from=build /src/htdocs /srv/tandem/htdocs
COPY --from=build /src/public /srv/tandem/public
COPY nginx.conf.example /etc/nginx/nginx.conf
RUN sed -i -e 's/server 127.0.0.1:8080;/server tandem:8080;/' \
        -e 's/server_name example.com;/server_name _;/' /etc/nginx/nginx.conf
EXPOSE 80
# SIGQUIT is nginx's graceful stop: it finishes the requests in flight.
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]


FROM debian:12.12-slim AS runtime

# The system roots, so tls.mode = "acme" can check the CA's directory (Let's Encrypt) over HTTPS.
# Unpinned on purpose: Debian's security updates replace the exact versions in the archive.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid, so `runAsNonRoot` checks (Kubernetes) can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 tandem \
    && useradd --system --uid 10001 --gid tandem --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin tandem

COPY --from=build /src/target/release/tandem /usr/local/bin/tandem
# The ACME cache (tls.acme.cache_dir) when one is used: owned by the server's uid and private,
# so a named volume mounted here inherits both.
RUN install -d -o 10001 -g 10001 -m 0700 /var/lib/tandem/acme
WORKDIR /app
# Owned by root: the server can read its site but never change it.
COPY --from=build /src/htdocs ./htdocs
COPY --from=build /src/public ./public

# Listen on every interface inside the container; the port stays the default 8080, so a
# platform's PORT variable (Cloud Run, Heroku) still applies. RUST_LOG is left unset: tandem's
# default is `info`, and any RUST_LOG given at `docker run` keeps actix's codec quiet too.
ENV TANDEM__SERVER__HOST=0.0.0.0

USER 10001:10001
EXPOSE 8080
# HTTPS, when TLS is on (server.port = 8443; 8080 is then tls.redirect_port). Both are above
# 1023, so the unprivileged user binds them; publish them as -p 443:8443 -p 80:8080.
EXPOSE 8443

# `tandem healthcheck` reads the same configuration and asks /healthz: no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["tandem", "healthcheck"]

# tandem is PID 1 (exec form, no shell in between) and handles SIGTERM itself: /readyz turns
# 503, in-flight requests finish, WebSockets get 1001, exit 0. Give `docker stop` a --time above
# server.shutdown_timeout_secs + server.shutdown_drain_secs (the default 10 s is below 15 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["tandem"]
CMD ["serve"]
