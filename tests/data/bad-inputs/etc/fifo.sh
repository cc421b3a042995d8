mkfifo "$ETC/initctl"
