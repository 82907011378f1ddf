#!/bin/sh
# As the official image does: each /etc/nginx/templates/X.template becomes $NGINX_ENVSUBST_OUTPUT_DIR/X,
# with only the variables the environment defines replaced (nginx's own $variables stay).
set -eu
output=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
if [ -d /etc/nginx/templates ]; then
  defined=$(env | cut -d= -f1 | sed 's/^/${/; s/$/}/' | tr '\n' ' ')
  for template in /etc/nginx/templates/*.template; do
    [ -e "$template" ] || continue
    target="$output/$(basename "$template" .template)"
    envsubst "$defined" < "$template" > "$target"
  done
fi
exec "$@"
