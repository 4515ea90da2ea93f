/**
 * Reader feedback on Discord. A finished article's last message carries four buttons (👍 👎
 * Regenerate, Suggest an edit) and an embed footer with its lineage; 👍/👎 reactions on any of its
 * messages count as ratings too. Whoever clicks is recorded, not the person who asked. "Suggest an
 * edit" opens a modal holding the article in paragraph inputs (several when it is over Discord's
 * 4,000-character input limit); Regenerate asks again through the core as the clicker and streams
 * the new article as that interaction's reply.
 */
import {
  type APIActionRowComponent,
  type APIButtonComponentWithCustomId,
  type APIEmbed,
  type APIModalInteractionResponseCallbackData,
  type ButtonInteraction,
  ButtonStyle,
  ComponentType,
  type Interaction,
  MessageFlags,
  type MessageReaction,
  type ModalSubmitInteraction,
  type PartialMessageReaction,
  type PartialUser,
  TextInputStyle,
  type User,
} from 'discord.js';
import { childLog } from '../log.ts';
import type { BotCore, Prepared } from './core.ts';
import {
  articleInputs,
  DISCORD_INPUT_MAX_CHARS,
  DISCORD_MODAL_MAX_INPUTS,
  FEEDBACK_ACTIONS,
  FEEDBACK_LABELS,
  feedbackCustomId,
  joinArticleInputs,
  lineageLine,
  parseFeedbackCustomId,
} from './feedback-ui.ts';
import type { Lineage, Requester } from './types.ts';

const logger = childLog('discord-feedback');

/** Only these reactions are read as ratings; any other emoji is just a reaction. */
export const RATING_REACTIONS: Readonly<Record<string, 1 | -1>> = { '👍': 1, '👎': -1 };
/** A modal's title is at most 45 characters. */
const EDIT_MODAL_TITLE = 'Suggest an edit';

const EPHEMERAL = MessageFlags.Ephemeral;
const NO_MENTIONS = { parse: [] as [] };

/** The row of buttons under a finished article. */
export function articleComponents(generationId: string): APIActionRowComponent<APIButtonComponentWithCustomId>[] {
  return [
    {
      type: ComponentType.ActionRow as const,
      components: FEEDBACK_ACTIONS.map((action) => ({
        type: ComponentType.Button as const,
        style: action === 'regen' || action === 'edit' ? ButtonStyle.Primary : ButtonStyle.Secondary,
        custom_id: feedbackCustomId(action, generationId),
        label: FEEDBACK_LABELS[action],
      })),
    },
  ];
}

/** The lineage as an embed footer: small grey text under the article, its content untouched. */
export function lineageEmbeds(columnist: string, lineage: Lineage | undefined): APIEmbed[] {
  return [{ footer: { text: lineageLine(columnist, lineage) } }];
}

/** The edit form: the article in as many paragraph inputs as its length needs. */
export function editModal(generationId: string, article: string): APIModalInteractionResponseCallbackData {
  const parts = articleInputs(article, DISCORD_INPUT_MAX_CHARS, DISCORD_MODAL_MAX_INPUTS);
  return {
    custom_id: feedbackCustomId('edit-form', generationId),
    title: EDIT_MODAL_TITLE,
    components: parts.map((value, n) => ({
      type: ComponentType.ActionRow as const,
      components: [
        {
          type: ComponentType.TextInput as const,
          custom_id: `part-${n}`,
          label: parts.length === 1 ? 'The article, as you would have it' : `Part ${n + 1} of ${parts.length}`,
          style: TextInputStyle.Paragraph,
          value,
          max_length: DISCORD_INPUT_MAX_CHARS,
          required: n === 0,
        },
      ],
    })),
  };
}

export interface DiscordFeedbackDeps {
  core: BotCore;
  requester(userId: string, member: unknown, channelId: string): Requester;
  /** Streams an accepted regeneration as the (already deferred) interaction's reply. */
  streamRegeneration(i: ButtonInteraction, prepared: Extract<Prepared, { ok: true }>): void;
}

/** Handles a feedback button or edit form; false when the interaction is not one of ours. */
export async function onFeedbackInteraction(i: Interaction, deps: DiscordFeedbackDeps): Promise<boolean> {
  if (!i.isButton() && !i.isModalSubmit()) return false;
  const parsed = parseFeedbackCustomId(i.customId);
  if (!parsed) return false;
  const clicker = deps.requester(i.user.id, i.member, i.channelId ?? '');
  const { feedback } = deps.core;
  const tell = (content: string) => i.reply({ content, flags: EPHEMERAL, allowedMentions: NO_MENTIONS });
  if (i.isModalSubmit()) {
    if (parsed.action === 'edit-form') await tell(feedback.suggestEdit(clicker, parsed.generationId, joinArticleInputs(formValues(i))).message);
    return true;
  }
  switch (parsed.action) {
    case 'up':
    case 'down':
      await tell(feedback.rate(clicker, parsed.generationId, parsed.action === 'up' ? 1 : -1).message);
      return true;
    case 'details':
      await tell(feedback.details(parsed.generationId).message);
      return true;
    case 'edit': {
      const article = feedback.article(parsed.generationId)?.article;
      if (!article) await tell('That article’s text is not kept, so it cannot be edited here.');
      else await i.showModal(editModal(parsed.generationId, article));
      return true;
    }
    case 'regen': {
      // The checks are quick (well inside Discord's 3 s); a refusal is private, like /morris's.
      const prepared = await feedback.regenerate(clicker, parsed.generationId);
      if (!prepared.ok) {
        await tell(prepared.message);
        return true;
      }
      await i.deferReply();
      deps.streamRegeneration(i, prepared);
      return true;
    }
    default:
      return false;
  }
}

/** The form's inputs in order (part-0, part-1, …). */
function formValues(i: ModalSubmitInteraction): string[] {
  const values: string[] = [];
  for (let n = 0; i.fields.fields.has(`part-${n}`); n++) values.push(i.fields.getTextInputValue(`part-${n}`));
  return values;
}

/** A 👍/👎 reaction on any message of an article is a rating by whoever reacted. */
export function onRatingReaction(
  reaction: MessageReaction | PartialMessageReaction,
  user: User | PartialUser,
  deps: Pick<DiscordFeedbackDeps, 'core' | 'requester'>,
  botUserId: string | undefined,
): void {
  const value = RATING_REACTIONS[reaction.emoji.name ?? ''];
  if (!value || user.id === botUserId || user.bot) return;
  const generationId = deps.core.feedback.generationForMessage('discord', reaction.message.id);
  if (!generationId) return;
  const receipt = deps.core.feedback.rate(deps.requester(user.id, null, reaction.message.channelId), generationId, value);
  if (!receipt.ok) logger.warn({ generationId, user: user.id }, 'reaction not recorded');
}
