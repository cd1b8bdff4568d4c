# gossipctl/busybox:local: Debian's static busybox FROM scratch, for the container examples
# and tests (no registry is reachable, so images are built locally by scripts/images.sh).
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENTRYPOINT ["/bin/busybox"]
CMD ["sh"]
