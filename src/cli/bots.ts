/**
 * Bot set-up: `morris discord register-commands` (slash commands via REST). Slack needs no
 * command: its app manifest is docs/slack-app-manifest.yml. The bots themselves run in
 * `morris serve`.
 */
import type { Command } from 'commander';
import { MorrisError } from '../errors.ts';
import type { CliContext } from './context.ts';

export function register(program: Command, ctx: CliContext): void {
  const discord = program.command('discord').description('Discord set-up (the bot runs in `morris serve`)');
  discord
    .command('register-commands')
    .description('Register /morris and /morris-admin with Discord (globally, or in one guild for instant testing)')
    .option('--guild <id>', 'register in this guild only (appears at once; global commands can take a while)')
    .action(async (opts: { guild?: string }) => {
      const config = ctx.config();
      if (!config.DISCORD_TOKEN || !config.DISCORD_APPLICATION_ID) {
        throw new MorrisError('CONFIG_INVALID', 'DISCORD_TOKEN and DISCORD_APPLICATION_ID are needed to register commands.', {
          hint: 'Both are on your application’s page in the Discord Developer Portal (Bot → token; General Information → application id).',
        });
      }
      // discord.js is heavy: load it only for this command, not for every `morris` start.
      const { registerDiscordCommands } = await import('../bot/discord.ts');
      const out = await registerDiscordCommands({
        token: config.DISCORD_TOKEN,
        applicationId: config.DISCORD_APPLICATION_ID,
        apiUrl: config.DISCORD_API_URL,
        guildId: opts.guild,
      });
      process.stdout.write(`Registered ${out.registered.map((n) => `/${n}`).join(', ')} ${opts.guild ? `in guild ${opts.guild}` : 'globally'}.\n`);
    });
}
