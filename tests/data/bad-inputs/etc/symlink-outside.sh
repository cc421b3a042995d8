ln -s /etc/shadow "$ETC/evil"; ln -s ../../../../../../.. "$ETC/up"
