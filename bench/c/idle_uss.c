/* Limit for idle_uss: idle_rss.c counting private pages only. */
#define IDLE_USS
#include "idle_rss.c"
