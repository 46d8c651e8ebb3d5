dnl PP_CHECK_APXS: find apxs (--with-apxs[=PATH] or the PATH) and derive every
dnl httpd and APR setting from `apxs -q`, as mod_md does.
AC_DEFUN([PP_CHECK_APXS], [
    AC_ARG_WITH([apxs],
        [AS_HELP_STRING([--with-apxs[=PATH]], [path to httpd's apxs (default: search PATH)])],
        [APXS="$withval"], [APXS=yes])
    AS_IF([test "$APXS" = yes || test "$APXS" = no || test -z "$APXS"],
          [AC_PATH_PROGS([APXS], [apxs apxs2], [], [$PATH:/usr/bin:/usr/sbin:/usr/local/apache2/bin])])
    AS_IF([test -z "$APXS" || test ! -x "$APXS"],
          [AC_MSG_ERROR([apxs not found: install httpd's development files (Debian: apt-get install apache2-dev) or pass --with-apxs=PATH])])
    AC_MSG_CHECKING([httpd settings from $APXS])
    APXS_INCLUDEDIR=`$APXS -q INCLUDEDIR`
    APXS_CFLAGS=`$APXS -q CFLAGS`
    APXS_EXTRA_CPPFLAGS=`$APXS -q EXTRA_CPPFLAGS 2>/dev/null`
    APR_CONFIG=`$APXS -q APR_CONFIG 2>/dev/null`
    APU_CONFIG=`$APXS -q APU_CONFIG 2>/dev/null`
    AS_IF([test -z "$APR_CONFIG"], [APR_CONFIG="`$APXS -q APR_BINDIR`/apr-1-config"])
    AS_IF([test -z "$APU_CONFIG"], [APU_CONFIG="`$APXS -q APU_BINDIR`/apu-1-config"])
    AS_IF([test ! -x "$APR_CONFIG"], [AC_MSG_ERROR([apr-1-config not found via apxs])])
    APR_CPPFLAGS="`$APR_CONFIG --cppflags` `$APR_CONFIG --includes`"
    APR_CFLAGS="`$APR_CONFIG --cflags`"
    APU_INCLUDES="`$APU_CONFIG --includes 2>/dev/null`"
    HTTPD_CPPFLAGS="-I$APXS_INCLUDEDIR $APR_CPPFLAGS $APU_INCLUDES $APXS_EXTRA_CPPFLAGS"
    HTTPD_CFLAGS="$APR_CFLAGS"
    dnl Only programs that link APR themselves need these (a fuzz target); modules do not.
    APR_LIBS="`$APR_CONFIG --link-ld` `$APU_CONFIG --link-ld 2>/dev/null`"
    APXS_SBINDIR=`$APXS -q SBINDIR`
    APXS_TARGET=`$APXS -q TARGET`
    HTTPD_BIN="$APXS_SBINDIR/$APXS_TARGET"
    HTTPD_VERSION=`$HTTPD_BIN -v 2>/dev/null | sed -n 's,^Server version: *,,p'`
    AC_MSG_RESULT([$APXS_INCLUDEDIR])
    AC_ARG_WITH([apache-moddir],
        [AS_HELP_STRING([--with-apache-moddir=DIR], [where make install puts mod_pprof.so (default: apxs LIBEXECDIR)])],
        [APACHE_MODDIR="$withval"], [APACHE_MODDIR=`$APXS -q LIBEXECDIR`])
    AC_ARG_WITH([apache-confdir],
        [AS_HELP_STRING([--with-apache-confdir=DIR], [where make install puts pprof.load and pprof.conf (default: apxs SYSCONFDIR/mods-available)])],
        [APACHE_CONFDIR="$withval"], [APACHE_CONFDIR="`$APXS -q SYSCONFDIR`/mods-available"])
    AC_SUBST([APXS])
    AC_SUBST([HTTPD_CPPFLAGS])
    AC_SUBST([HTTPD_CFLAGS])
    AC_SUBST([APR_LIBS])
    AC_SUBST([HTTPD_BIN])
    AC_SUBST([HTTPD_VERSION])
    AC_SUBST([APACHE_MODDIR])
    AC_SUBST([APACHE_CONFDIR])
])

dnl PP_REQUIRE_PKG(VAR, MODULE, DEBIAN-PACKAGE): a missing dependency stops configure
dnl with the package to install.
AC_DEFUN([PP_REQUIRE_PKG], [
    PKG_CHECK_MODULES([$1], [$2], [],
        [AC_MSG_ERROR([$2 not found by pkg-config: install it (Debian: apt-get install $3)])])
])
