dnl PP_CHECK_PHP: PHP's headers, for mod_pprof_php (the PHP frames provider), which reads
dnl mod_php's own structures and so is built against the headers of the PHP it runs with.
dnl Optional: without php-config (Debian: php8.2-dev) mod_pprof_php is not built;
dnl --with-php-config=PATH insists on that one, --without-php-config skips it.
AC_DEFUN([PP_CHECK_PHP], [
    AC_ARG_WITH([php-config],
        [AS_HELP_STRING([--with-php-config=PATH],
            [php-config of the PHP that mod_php runs, for mod_pprof_php (default: php-config in the PATH, if any)])],
        [], [with_php_config=check])
    have_php=no
    PHP_CPPFLAGS=
    PHP_VERSION=
    AS_IF([test "x$with_php_config" != xno], [
        AS_IF([test "x$with_php_config" = xcheck || test "x$with_php_config" = xyes],
              [AC_PATH_PROG([PHP_CONFIG], [php-config], [])],
              [PHP_CONFIG="$with_php_config"])
        AS_IF([test -n "$PHP_CONFIG" && test -x "$PHP_CONFIG"], [
            PHP_VERSION=`$PHP_CONFIG --version`
            dnl -isystem: PHP's headers are not held to our warnings.
            PHP_CPPFLAGS=`$PHP_CONFIG --includes | sed 's/-I/-isystem /g'`
            AC_MSG_CHECKING([for usable non-ZTS PHP $PHP_VERSION headers])
            pp_save_CPPFLAGS=$CPPFLAGS
            CPPFLAGS="$CPPFLAGS $PHP_CPPFLAGS"
            AC_COMPILE_IFELSE([AC_LANG_PROGRAM([[
#include "php.h"
#include "zend_globals.h"
#ifdef ZTS
#error "thread-safe (ZTS) PHP: mod_pprof_php reads the one global executor of a non-ZTS build"
#endif
]], [[zend_executor_globals g; return (int)sizeof(g.current_execute_data);]])],
                [have_php=yes], [have_php=no])
            CPPFLAGS=$pp_save_CPPFLAGS
            AC_MSG_RESULT([$have_php])
        ])
        AS_IF([test "$have_php" = no && test "x$with_php_config" != xcheck],
              [AC_MSG_ERROR([no usable non-ZTS PHP headers from php-config (Debian: apt-get install php8.2-dev)])])
    ])
    AS_IF([test "$have_php" = no], [PHP_CPPFLAGS=])
    AC_SUBST([PHP_CPPFLAGS])
    AM_CONDITIONAL([HAVE_PHP], [test "$have_php" = yes])
])
