# imagekit_ext: PGXS build.  See README.md.

MODULE_big = imagekit_ext
OBJS = \
	imagekit_ext.o \
	src/ik_assets.o \
	src/ik_compat.o \
	src/ik_enqueue.o \
	src/ik_guc.o \
	src/ik_hash.o \
	src/ik_http.o \
	src/ik_jobs.o \
	src/ik_launcher.o \
	src/ik_protocol.o \
	src/ik_queue.o \
	src/ik_redact.o \
	src/ik_response.o \
	src/ik_shmem.o \
	src/ik_source.o \
	src/ik_sql.o \
	src/ik_stats.o \
	src/ik_url.o \
	src/ik_spi.o \
	src/ik_worker.o
PGFILEDESC = "imagekit_ext - upload images to the ImageKit CDN"

EXTENSION = imagekit_ext
DATA = sql/imagekit_ext--1.0.sql sql/imagekit_ext--1.0--1.1.sql sql/imagekit_ext--1.1--1.2.sql \
	sql/imagekit_ext--1.2--1.3.sql \
	sql/imagekit_ext--1.3--1.4.sql \
	sql/imagekit_ext--1.4--1.5.sql

PG_CPPFLAGS = -I$(srcdir)/src $(shell pkg-config --cflags libcurl json-c)
SHLIB_LINK = $(shell pkg-config --libs libcurl json-c)

# make SANITIZE=1: built with AddressSanitizer and UndefinedBehaviorSanitizer.
# The server is not, so it must run with the ASan runtime preloaded; see
# "Sanitizers" in README.md (bash test/run-tests.sh --sanitize does it all).
ifeq ($(SANITIZE),1)
PG_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-common
SHLIB_LINK += -fsanitize=address,undefined
endif

# pg_regress needs a server configured by test/run-tests (the stand-in's
# endpoint and key); the TAP tests start their own.
REGRESS = setup settings upload attach attach_options coffee url
ISOLATION = claim_skip_locked claim_lease requeue_while_in_flight complete_lock_order orphans delete_reinsert
ISOLATION_OPTS = --inputdir=test/isolation
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on every header (PGXS tracks no header dependencies)
$(OBJS): $(wildcard $(srcdir)/src/*.h)

# the libFuzzer harnesses of test/fuzz/, FUZZ_SECONDS each; see README.md
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	bash $(srcdir)/test/fuzz/run.sh $(FUZZ_SECONDS)
