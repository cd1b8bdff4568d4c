# gossipd, the gossipctl node agent, as a container image built FROM scratch: a static agent
# binary plus Debian's static busybox, so `process` workloads have a small userland to run.
# No registry is needed: scripts/images.sh builds the binary and this image locally.
#
#   scripts/images.sh                  # builds gossipctl/gossipd:dev (and the example image)
#   docker-compose -p gossipctl up -d  # a 3-node cluster on a private network (compose.yaml)
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY gossipd /usr/bin/gossipd
# QUIC: membership, state sync, the CLI's API and logs, all on one UDP port.
EXPOSE 7946/udp
ENTRYPOINT ["/usr/bin/gossipd"]
CMD ["--help"]
