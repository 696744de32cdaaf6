# syntax=docker/dockerfile:1
#
# dsql-credential-operator container image.
#   docker build -t ghcr.io/dsql-credential-operator/dsql-credential-operator:0.1.0 .
# Final image: distroless cc (glibc, CA certificates, no shell, no package manager), uid 65532.

ARG RUST_VERSION=1.95

# ---- build ------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# 1. Dependencies only, so a source change does not rebuild them: the manifests plus stub
#    sources give a layer that stays cached until Cargo.toml or Cargo.lock change. The test-only
#    fake API server is a workspace member: only its manifest is needed (it is not built here).
#    Cargo reads every target a manifest declares before it builds anything, so each one gets a
#    stub: src/main.rs, src/lib.rs, the fake's lib.rs and benches/scale.rs ([[bench]] scale,
#    whose stub stays: the manifest is read again in step 2). tests/python/test_image_build.py
#    replays these steps with the context .dockerignore lets in.
COPY Cargo.toml Cargo.lock ./
COPY crates/kube-fake-apiserver/Cargo.toml crates/kube-fake-apiserver/
RUN mkdir src benches crates/kube-fake-apiserver/src \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > benches/scale.rs \
    && touch src/lib.rs crates/kube-fake-apiserver/src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# 2. The operator itself, with the one file outside src/ that it compiles in
#    (src/check/permissions.rs include_str!s deploy/kubernetes-permissions.yaml). touch: COPY
#    keeps the sources' old mtimes, which cargo would take as older than the stub build.
COPY deploy/kubernetes-permissions.yaml deploy/
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && install -D -m 0755 target/release/dsql-credential-operator /out/dsql-credential-operator \
    && /out/dsql-credential-operator --version

# ---- runtime ----------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="dsql-credential-operator" \
      org.opencontainers.image.description="Keeps Aurora DSQL IAM auth tokens fresh in AWS Secrets Manager for DsqlCredential objects" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

COPY --from=build /out/dsql-credential-operator /usr/local/bin/dsql-credential-operator

# nonroot = 65532:65532; the chart also sets runAsUser/runAsGroup 65532 and a read-only root.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/dsql-credential-operator"]
CMD ["run"]
