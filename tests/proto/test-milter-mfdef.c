/* SPDX-License-Identifier: MIT
 *
 * test-milter-mfdef.c — our milter constants against libmilter's own
 * headers (<libmilter/mfdef.h>, <libmilter/mfapi.h>, libmilter-dev): every
 * command, reply, action, protocol bit, address family, stage and the
 * version masks.  A typo in proto/milter/milter.h fails here, not on the
 * wire.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#include "proto/milter/milter.h"

typedef struct
{
  const char *name;
  long ours;
  long theirs;
} Pair;

#define P(o, t)                                                                                    \
  {                                                                                                \
#t, (long)(o), (long)(t)                                                                       \
  }

static const Pair commands[] = {
  P (MILTER_CMD_ABORT, SMFIC_ABORT),     P (MILTER_CMD_BODY, SMFIC_BODY),
  P (MILTER_CMD_CONNECT, SMFIC_CONNECT), P (MILTER_CMD_MACRO, SMFIC_MACRO),
  P (MILTER_CMD_EOB, SMFIC_BODYEOB),     P (MILTER_CMD_HELO, SMFIC_HELO),
  P (MILTER_CMD_QUIT_NC, SMFIC_QUIT_NC), P (MILTER_CMD_HEADER, SMFIC_HEADER),
  P (MILTER_CMD_MAIL, SMFIC_MAIL),       P (MILTER_CMD_EOH, SMFIC_EOH),
  P (MILTER_CMD_OPTNEG, SMFIC_OPTNEG),   P (MILTER_CMD_QUIT, SMFIC_QUIT),
  P (MILTER_CMD_RCPT, SMFIC_RCPT),       P (MILTER_CMD_DATA, SMFIC_DATA),
  P (MILTER_CMD_UNKNOWN, SMFIC_UNKNOWN),
};

static const Pair replies[] = {
  P (MILTER_REPLY_ADDRCPT, SMFIR_ADDRCPT),
  P (MILTER_REPLY_DELRCPT, SMFIR_DELRCPT),
  P (MILTER_REPLY_ADDRCPT_PAR, SMFIR_ADDRCPT_PAR),
  P (MILTER_REPLY_SHUTDOWN, SMFIR_SHUTDOWN),
  P (MILTER_REPLY_ACCEPT, SMFIR_ACCEPT),
  P (MILTER_REPLY_REPLBODY, SMFIR_REPLBODY),
  P (MILTER_REPLY_CONTINUE, SMFIR_CONTINUE),
  P (MILTER_REPLY_DISCARD, SMFIR_DISCARD),
  P (MILTER_REPLY_CHGFROM, SMFIR_CHGFROM),
  P (MILTER_REPLY_ADDHEADER, SMFIR_ADDHEADER),
  P (MILTER_REPLY_INSHEADER, SMFIR_INSHEADER),
  P (MILTER_REPLY_CHGHEADER, SMFIR_CHGHEADER),
  P (MILTER_REPLY_PROGRESS, SMFIR_PROGRESS),
  P (MILTER_REPLY_QUARANTINE, SMFIR_QUARANTINE),
  P (MILTER_REPLY_REJECT, SMFIR_REJECT),
  P (MILTER_REPLY_SKIP, SMFIR_SKIP),
  P (MILTER_REPLY_TEMPFAIL, SMFIR_TEMPFAIL),
  P (MILTER_REPLY_REPLYCODE, SMFIR_REPLYCODE),
  /* the negotiation answer reuses the command byte */
  P (MILTER_REPLY_OPTNEG, SMFIC_OPTNEG),
};

static const Pair actions[] = {
  P (MILTER_ACTION_ADDHDRS, SMFIF_ADDHDRS),       P (MILTER_ACTION_CHGBODY, SMFIF_CHGBODY),
  P (MILTER_ACTION_ADDRCPT, SMFIF_ADDRCPT),       P (MILTER_ACTION_DELRCPT, SMFIF_DELRCPT),
  P (MILTER_ACTION_CHGHDRS, SMFIF_CHGHDRS),       P (MILTER_ACTION_QUARANTINE, SMFIF_QUARANTINE),
  P (MILTER_ACTION_CHGFROM, SMFIF_CHGFROM),       P (MILTER_ACTION_ADDRCPT_PAR, SMFIF_ADDRCPT_PAR),
  P (MILTER_ACTION_SETSYMLIST, SMFIF_SETSYMLIST),
};

static const Pair protocol[] = {
  P (MILTER_PROTO_NOCONNECT, SMFIP_NOCONNECT),
  P (MILTER_PROTO_NOHELO, SMFIP_NOHELO),
  P (MILTER_PROTO_NOMAIL, SMFIP_NOMAIL),
  P (MILTER_PROTO_NORCPT, SMFIP_NORCPT),
  P (MILTER_PROTO_NOBODY, SMFIP_NOBODY),
  P (MILTER_PROTO_NOHDRS, SMFIP_NOHDRS),
  P (MILTER_PROTO_NOEOH, SMFIP_NOEOH),
  P (MILTER_PROTO_NR_HDR, SMFIP_NR_HDR),
  P (MILTER_PROTO_NOUNKNOWN, SMFIP_NOUNKNOWN),
  P (MILTER_PROTO_NODATA, SMFIP_NODATA),
  P (MILTER_PROTO_SKIP, SMFIP_SKIP),
  P (MILTER_PROTO_RCPT_REJ, SMFIP_RCPT_REJ),
  P (MILTER_PROTO_NR_CONN, SMFIP_NR_CONN),
  P (MILTER_PROTO_NR_HELO, SMFIP_NR_HELO),
  P (MILTER_PROTO_NR_MAIL, SMFIP_NR_MAIL),
  P (MILTER_PROTO_NR_RCPT, SMFIP_NR_RCPT),
  P (MILTER_PROTO_NR_DATA, SMFIP_NR_DATA),
  P (MILTER_PROTO_NR_UNKN, SMFIP_NR_UNKN),
  P (MILTER_PROTO_NR_EOH, SMFIP_NR_EOH),
  P (MILTER_PROTO_NR_BODY, SMFIP_NR_BODY),
  P (MILTER_PROTO_HDR_LEADSPC, SMFIP_HDR_LEADSPC),
};

static const Pair misc[] = {
  P (MILTER_FAMILY_UNKNOWN, SMFIA_UNKNOWN),
  P (MILTER_FAMILY_UNIX, SMFIA_UNIX),
  P (MILTER_FAMILY_INET, SMFIA_INET),
  P (MILTER_FAMILY_INET6, SMFIA_INET6),
  P (MILTER_STAGE_CONNECT, SMFIM_CONNECT),
  P (MILTER_STAGE_HELO, SMFIM_HELO),
  P (MILTER_STAGE_ENVFROM, SMFIM_ENVFROM),
  P (MILTER_STAGE_ENVRCPT, SMFIM_ENVRCPT),
  P (MILTER_STAGE_DATA, SMFIM_DATA),
  P (MILTER_STAGE_EOM, SMFIM_EOM),
  P (MILTER_STAGE_EOH, SMFIM_EOH),
  P (MILTER_N_STAGES, SMFIM_LAST + 1),
  P (MILTER_PROTOCOL_ALL, SMFI_CURR_PROT),
  P (MILTER_V2_PROTOCOL, SMFI_V2_PROT),
  P (MILTER_V1_PROTOCOL, SMFI_V1_PROT),
  P (MILTER_MAX_BODY_CHUNK, MILTER_CHUNK_SIZE),
  P (MILTER_MAX_DATA_SIZE, MILTER_MAX_DATA_SIZE),
};

static void
check (gconstpointer data)
{
  const Pair *table = ((const Pair *const *)data)[0];
  gsize n = GPOINTER_TO_SIZE (((const gconstpointer *)data)[1]);

  for (gsize i = 0; i < n; i++)
    {
      if (table[i].ours != table[i].theirs)
        g_test_message ("%s: ours 0x%lx, libmilter 0x%lx", table[i].name, table[i].ours,
                        table[i].theirs);
      g_assert_cmphex (table[i].ours, ==, table[i].theirs);
    }
}

/* The action masks are not in the headers as such: every action libmilter
 * defines is in MILTER_ACTIONS_ALL, and the version-2 ones are the first
 * six (CHGFROM and later are version 6). */
static void
test_action_masks (void)
{
  guint32 all = 0;

  for (gsize i = 0; i < G_N_ELEMENTS (actions); i++)
    all |= (guint32)actions[i].theirs;
  g_assert_cmphex (all, ==, MILTER_ACTIONS_ALL);
  g_assert_cmphex (MILTER_V2_ACTIONS, ==,
                   SMFIF_ADDHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT | SMFIF_CHGHDRS
                       | SMFIF_QUARANTINE);
}

int
main (int argc, char **argv)
{
  static const struct
  {
    const char *path;
    gconstpointer pair[2];
  } tables[] = {
    { "/proto/milter/mfdef/commands", { commands, GSIZE_TO_POINTER (G_N_ELEMENTS (commands)) } },
    { "/proto/milter/mfdef/replies", { replies, GSIZE_TO_POINTER (G_N_ELEMENTS (replies)) } },
    { "/proto/milter/mfdef/actions", { actions, GSIZE_TO_POINTER (G_N_ELEMENTS (actions)) } },
    { "/proto/milter/mfdef/protocol", { protocol, GSIZE_TO_POINTER (G_N_ELEMENTS (protocol)) } },
    { "/proto/milter/mfdef/misc", { misc, GSIZE_TO_POINTER (G_N_ELEMENTS (misc)) } },
  };

  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (tables); i++)
    g_test_add_data_func (tables[i].path, tables[i].pair, check);
  g_test_add_func ("/proto/milter/mfdef/action-masks", test_action_masks);
  return g_test_run ();
}
