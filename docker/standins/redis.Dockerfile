# Stand-in for redis:7-alpine: Debian bookworm's redis-server (7.0), behaving as the official image does:
# no protected mode, listening on every interface, data in /data.
ARG ROOTFS
FROM ${ROOTFS}
RUN mkdir -p /data && chown redis:redis /data \
    && printf '#!/bin/sh\nset -e\nif [ "${1#-}" != "$1" ] || [ "$1" = redis-server ]; then\n  [ "$1" = redis-server ] && shift\n  exec setpriv --reuid=redis --regid=redis --init-groups redis-server --protected-mode no --bind "* -::*" --dir /data "$@"\nfi\nexec "$@"\n' \
       > /usr/local/bin/docker-entrypoint.sh && chmod +x /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
VOLUME /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
