rm -rf "$ETC/ssh"; echo file > "$ETC/ssh"
