# Joins costplane's configuration from the ConfigMap ($CONFIG_IN) and the
# API keys in the Secret ($SECRETS_DIR) into $CONFIG_OUT, which costplane
# reads. TOML lets [[api.keys]] entries follow the file's other tables.
set -euo pipefail
umask 077
admin_key=$(head -n 1 "$SECRETS_DIR/admin-key")
# The key is written inside a TOML basic string.
case "$admin_key" in
  *'"'* | *'\'*) echo "admin-key must not contain quotes or backslashes" >&2; exit 1 ;;
esac
{
  cat "$CONFIG_IN"
  printf '\n[[api.keys]]\nkey = "%s"\nrole = "admin"\n' "$admin_key"
  if [ -f "$SECRETS_DIR/api-keys.toml" ]; then
    printf '\n'
    cat "$SECRETS_DIR/api-keys.toml"
  fi
} > "$CONFIG_OUT"
echo "wrote $CONFIG_OUT"
