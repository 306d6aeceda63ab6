// projects pages: behaviour beyond plain forms (none yet).
