# A stand-in for the official registry:2 image: Debian's docker-registry package is the CNCF
# distribution registry 2.8. Listens on :5000 over plain HTTP with in-container storage.
ARG DEBIAN_IMAGE=local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry \
 && rm -rf /var/lib/apt/lists/*
COPY registry.yml /etc/docker/registry/config.yml
EXPOSE 5000
CMD ["docker-registry", "serve", "/etc/docker/registry/config.yml"]
