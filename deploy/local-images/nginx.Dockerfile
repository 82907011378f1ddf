# Stand-in for the official nginx image: Debian's nginx, the configuration in /etc/nginx, templates in
# /etc/nginx/templates/*.template filled from the environment into NGINX_ENVSUBST_OUTPUT_DIR at start.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx gettext-base ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
    && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
COPY nginx-entrypoint.sh /docker-entrypoint.sh
ENTRYPOINT ["/docker-entrypoint.sh"]
EXPOSE 80 443
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off; user www-data;"]
