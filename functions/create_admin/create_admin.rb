# tootstack create-admin: the code `bin/rails runner` evaluates in the one-off admin ECS task.
# Environment: ADMIN_USERNAME, ADMIN_EMAIL, ADMIN_ROLE, ADMIN_RESET_PASSWORD, ADMIN_REQUEST (RunTask
# overrides); ADMIN_PASSWORD, ADMIN_PENDING_USERNAME, ADMIN_PENDING_REQUEST (ECS secrets, from the
# pending secret). Prints nothing secret. Exit codes (see tootstack/oneoff/admin.py): 0 created,
# 10 existed (password unchanged), 11 existed (password reset), 2 refused input, 3 the pending
# secret belongs to another request, 1 any other error.
username = ENV.fetch('ADMIN_USERNAME', '')
email = ENV.fetch('ADMIN_EMAIL', '')
role_name = ENV.fetch('ADMIN_ROLE', '')
reset = ENV['ADMIN_RESET_PASSWORD'] == 'true'
password = ENV.fetch('ADMIN_PASSWORD', '')
say = ->(msg) { $stdout.puts("tootstack create-admin: #{msg}"); $stdout.flush }
begin
  unless username.match?(/\A[a-z0-9_]{1,30}\z/i) && email.match?(/\A[^@\s]+@[^@\s]+\.[^@\s]+\z/) &&
         %w[Owner Admin Moderator].include?(role_name)
    say.call('refused: invalid username, email or role')
    exit 2
  end
  unless ENV['ADMIN_PENDING_REQUEST'].to_s == ENV['ADMIN_REQUEST'].to_s && !ENV['ADMIN_REQUEST'].to_s.empty? &&
         ENV['ADMIN_PENDING_USERNAME'].to_s.casecmp?(username)
    say.call('refused: the pending secret belongs to another request (concurrent run?); nothing changed')
    exit 3
  end
  if password.length < 16
    say.call('refused: the pending secret holds no usable password')
    exit 2
  end
  role = UserRole.find_by(name: role_name)
  if role.nil?
    say.call("refused: role #{role_name} does not exist")
    exit 2
  end
  account = Account.find_local(username)
  if account.nil?
    ActiveRecord::Base.transaction do
      # Like Mastodon's own setup task: the first admin may take a reserved name such as "admin".
      account = Account.new(username: username)
      account.save(validate: false)
      user = User.new(email: email, password: password, password_confirmation: password, account: account,
                      role: role, agreement: true, approved: true, confirmed_at: Time.now.utc,
                      bypass_invite_request_check: true)
      user.save!
    end
    say.call("created @#{username} as #{role_name}, confirmed and approved")
    exit 0
  end
  user = account.user
  if user.nil?
    say.call("refused: @#{username} is not a local user account")
    exit 2
  end
  user.role = role
  user.approved = true
  user.confirmed_at ||= Time.now.utc
  if reset
    user.password = password
    user.password_confirmation = password
  end
  user.save!
  if reset
    say.call("@#{username} existed: role #{role_name}, confirmed and approved; password reset")
    exit 11
  end
  say.call("@#{username} existed: role #{role_name}, confirmed and approved; password unchanged")
  exit 10
rescue ActiveRecord::RecordInvalid => e
  message = e.record.errors.full_messages.join('; ')
  message = message.gsub(password, '[redacted]') unless password.empty?
  say.call("refused by Mastodon's validations: #{message}")
  exit 2
rescue StandardError => e
  message = e.message.to_s
  message = message.gsub(password, '[redacted]') unless password.empty?
  say.call("failed: #{e.class}: #{message[0, 300]}")
  exit 1
end
