/* SPDX-License-Identifier: MIT
 *
 * milter-negotiate.c — the option negotiation (SMFIC_OPTNEG) from both ends,
 * and what the negotiated options mean for each command.
 *
 * Contract: milter_negotiate_answer() answers an MTA as libmilter's
 * st_optionneg does (version min(ours, MTA's), MTA versions below 2
 * refused, 0 offers mean version-1 defaults) but never asks for an action
 * or protocol bit the MTA did not offer or the answered version does not
 * define — it degrades instead of refusing, and the caller learns from the
 * answer which NR_* replies it must still send.  milter_negotiate_check_answer()
 * judges a milter's answer as Postfix's milter8_connect() does.  The
 * per-command table is the one place that maps NO_* / NR_* bits and
 * versions to "sent" and "replied".
 */
#include "milter-private.h"

guint32
milter_version_actions (guint32 version)
{
  if (version >= 6)
    return MILTER_ACTIONS_ALL;
  if (version >= 2)
    return MILTER_V2_ACTIONS;
  return MILTER_V1_ACTIONS;
}

guint32
milter_version_protocol (guint32 version)
{
  if (version >= 6)
    return MILTER_PROTOCOL_ALL;
  if (version >= 4)
    return MILTER_V4_PROTOCOL;
  if (version == 3)
    return MILTER_V3_PROTOCOL;
  if (version == 2)
    return MILTER_V2_PROTOCOL;
  return MILTER_V1_PROTOCOL;
}

gboolean
milter_negotiate_answer (const MilterOptions *offer, const MilterOptions *want,
                         MilterOptions *answer, GError **error)
{
  guint32 want_version, version, offer_actions, offer_protocol;

  g_return_val_if_fail (offer != NULL && want != NULL && answer != NULL, FALSE);
  g_return_val_if_fail (want->version == 0 || want->version >= MILTER_VERSION_MIN, FALSE);

  if (offer->version < MILTER_VERSION_MIN)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_VERSION,
                   "MTA offers milter protocol version %" G_GUINT32_FORMAT ", minimum %d",
                   offer->version, MILTER_VERSION_MIN);
      return FALSE;
    }
  want_version
      = want->version != 0 ? MIN (want->version, (guint32)MILTER_VERSION) : (guint32)MILTER_VERSION;
  version = MIN (want_version, offer->version);
  /* libmilter reads an empty offer as the version-1 defaults. */
  offer_actions = offer->actions != 0 ? offer->actions : MILTER_V1_ACTIONS;
  offer_protocol = offer->protocol != 0 ? offer->protocol : MILTER_V1_PROTOCOL;

  answer->version = version;
  answer->actions = want->actions & offer_actions & milter_version_actions (version);
  answer->protocol = want->protocol & offer_protocol & milter_version_protocol (version);
  return TRUE;
}

gboolean
milter_negotiate_check_answer (const MilterOptions *offer, const MilterOptions *answer,
                               MilterOptions *effective, GError **error)
{
  g_return_val_if_fail (offer != NULL && answer != NULL && effective != NULL, FALSE);

  if (answer->version < MILTER_VERSION_MIN || answer->version > offer->version)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_VERSION,
                   "milter answers protocol version %" G_GUINT32_FORMAT
                   ", offered %" G_GUINT32_FORMAT " (minimum %d)",
                   answer->version, offer->version, MILTER_VERSION_MIN);
      return FALSE;
    }
  if ((answer->actions & ~offer->actions) != 0)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_ACTIONS,
                   "milter asks for actions 0x%" G_GINT32_MODIFIER
                   "x, offered 0x%" G_GINT32_MODIFIER "x",
                   answer->actions, offer->actions);
      return FALSE;
    }
  effective->version = answer->version;
  effective->actions = answer->actions;
  /* Protocol bits are honoured even when not offered (as Postfix does): an
   * NR_* bit we dropped would make us wait for a reply that never comes.
   * Only bits no version defines (libmilter's internal MDS bits) go. */
  effective->protocol = answer->protocol & MILTER_PROTOCOL_ALL;
  return TRUE;
}

typedef struct
{
  MilterCommand cmd;
  guint32 min_version; /* the MTA sends it only from this version on */
  guint32 no_bit;      /* 0: cannot be switched off */
  guint32 nr_bit;      /* 0: see replied */
  gboolean replied;    /* replied unless nr_bit is negotiated */
} MilterStep;

static const MilterStep steps[] = {
  { MILTER_CMD_OPTNEG, 0, 0, 0, TRUE },
  { MILTER_CMD_MACRO, 0, 0, 0, FALSE },
  { MILTER_CMD_CONNECT, 0, MILTER_PROTO_NOCONNECT, MILTER_PROTO_NR_CONN, TRUE },
  { MILTER_CMD_HELO, 0, MILTER_PROTO_NOHELO, MILTER_PROTO_NR_HELO, TRUE },
  { MILTER_CMD_MAIL, 0, MILTER_PROTO_NOMAIL, MILTER_PROTO_NR_MAIL, TRUE },
  { MILTER_CMD_RCPT, 0, MILTER_PROTO_NORCPT, MILTER_PROTO_NR_RCPT, TRUE },
  { MILTER_CMD_DATA, 4, MILTER_PROTO_NODATA, MILTER_PROTO_NR_DATA, TRUE },
  { MILTER_CMD_HEADER, 0, MILTER_PROTO_NOHDRS, MILTER_PROTO_NR_HDR, TRUE },
  { MILTER_CMD_EOH, 0, MILTER_PROTO_NOEOH, MILTER_PROTO_NR_EOH, TRUE },
  { MILTER_CMD_BODY, 0, MILTER_PROTO_NOBODY, MILTER_PROTO_NR_BODY, TRUE },
  { MILTER_CMD_EOB, 0, 0, 0, TRUE },
  { MILTER_CMD_UNKNOWN, 3, MILTER_PROTO_NOUNKNOWN, MILTER_PROTO_NR_UNKN, TRUE },
  { MILTER_CMD_ABORT, 0, 0, 0, FALSE },
  { MILTER_CMD_QUIT, 0, 0, 0, FALSE },
  { MILTER_CMD_QUIT_NC, 0, 0, 0, FALSE },
};

static const MilterStep *
find_step (MilterCommand cmd)
{
  for (gsize i = 0; i < G_N_ELEMENTS (steps); i++)
    if (steps[i].cmd == cmd)
      return &steps[i];
  return NULL;
}

gboolean
milter_protocol_sends (const MilterOptions *negotiated, MilterCommand cmd)
{
  const MilterStep *s = find_step (cmd);

  g_return_val_if_fail (negotiated != NULL, FALSE);
  g_return_val_if_fail (s != NULL, FALSE);

  if (negotiated->version < s->min_version)
    return FALSE;
  return (negotiated->protocol & s->no_bit) == 0;
}

gboolean
milter_protocol_expects_reply (const MilterOptions *negotiated, MilterCommand cmd)
{
  const MilterStep *s = find_step (cmd);

  g_return_val_if_fail (negotiated != NULL, FALSE);
  g_return_val_if_fail (s != NULL, FALSE);

  if (!s->replied || !milter_protocol_sends (negotiated, cmd))
    return FALSE;
  return (negotiated->protocol & s->nr_bit) == 0;
}
